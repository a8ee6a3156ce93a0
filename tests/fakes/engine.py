"""A fake infrastructure engine: ``up`` runs the real Pulumi program (infra/) under Pulumi's mocks with the
release deployctl wrote to ``deployctl:release`` and applies the Cloud Run services and jobs it declares to
the fake Cloud Run (revision name, image, pinned secret versions, traffic and tags exactly as the program
sets them). So a test fails when the program and deployctl disagree on a name, a pin or the traffic.

What the mocks cannot give (real random secret values, the Cloud SQL users' first passwords) is created
here the way the providers would.

Every call deployctl makes (``check``, ``outputs``, ``refresh``, ``record``, ``up``, with the release it
wrote to the stack config) is kept in one :class:`PulumiBackend`: the fake's remote state, like the state
backend every ``pulumi`` run of a project shares. A test makes one and hands it to every FakeEngine it
creates (GcpTarget gets a new engine each time it is built), so counts read after the fact are the
calls of the whole test, not of an engine created to read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from secrets import token_hex
from typing import Any

from drongo import get_backend
from google.cloud import run_v2

from deployctl import naming  # the fake applies what the program would create, under the program's names
from deployctl.config import Release, Stack
from deployctl.targets.gcp.synth import synthesize
from tests.fakes.cloudrun import FakeRunServices
from tests.fakes.sqladmin import FakeSqlAdmin


@dataclass(frozen=True)
class EngineCall:
    stack: str
    method: str  # check, outputs, refresh, record or up
    release: Release | None = None  # what record and up wrote to the stack's deployctl:release


@dataclass
class PulumiBackend:
    """Every engine call of a test, in order, whichever FakeEngine made it (bookkeeping only)."""

    calls: list[EngineCall] = field(default_factory=list)

    def methods(self, stack: str) -> list[str]:
        return [c.method for c in self.calls if c.stack == stack]

    def releases(self, stack: str, method: str) -> list[Release]:
        """The releases *method* (``up`` or ``record``) wrote to *stack*'s config, oldest first."""
        return [c.release for c in self.calls if c.stack == stack and c.method == method and c.release]


class FakeEngine:
    def __init__(self, stack: Stack, run: FakeRunServices, backend: PulumiBackend,
                 sql: FakeSqlAdmin | None = None) -> None:
        self.stack = stack
        self.run = run
        self.sql = sql
        self.backend = backend
        self.parent = f"projects/{stack.project}/locations/{stack.region}"

    def _call(self, method: str, release: Release | None = None) -> None:
        self.backend.calls.append(EngineCall(self.stack.name, method, release))

    def check(self) -> None:
        self._call("check")

    def outputs(self) -> dict[str, Any]:
        self._call("outputs")
        return self._outputs()

    def _outputs(self) -> dict[str, Any]:
        return {"db_connection": naming.connection(self.stack)}

    def refresh(self) -> None:
        self._call("refresh")

    def record(self, release: Release) -> None:
        self._call("record", release)

    def up(self, release: Release) -> dict[str, Any]:
        """Run the real program (infra/) under Pulumi mocks with this release, then apply the services and jobs
        it declares to the fakes. Secrets and database users are created here with real random values, as
        the providers would (under mocks every generated value is the same placeholder)."""
        self._call("up", release)
        self._secrets()
        self._users()
        synthesis = synthesize(self.stack.model_copy(update={"release": release}))
        for resource in synthesis.of_type("gcp:cloudrunv2/service:Service"):
            inputs = resource.inputs
            if inputs["template"]["containers"][0]["image"] not in release.images.values():
                continue  # no image released for it yet: the program's placeholder; nothing to test there
            traffic = [_traffic(t) for t in inputs.get("traffics") or []]
            self.run.apply(f"{self.parent}/services/{inputs['name']}", _template(inputs["template"]), traffic)
        # the invoker bindings the program declares replace the services' previous ones (an up converges)
        ours = {str(r.inputs["name"]) for r in synthesis.of_type("gcp:cloudrunv2/service:Service")}
        self.run.http.public -= ours
        for member in synthesis.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember"):
            if member.inputs.get("member") == "allUsers" and member.inputs.get("role") == "roles/run.invoker":
                self.run.http.public.add(str(member.inputs.get("name", "")).rsplit("/", 1)[-1])
        backend = get_backend("cloudrun")[str(self.stack.project)]
        for resource in synthesis.of_type("gcp:cloudrunv2/job:Job"):
            container = resource.inputs["template"]["template"]["containers"][0]
            if container["image"] not in release.images.values():
                continue
            spec = {"template": {"template": {"containers": [
                {"image": container["image"], "command": container.get("commands", [])}]}}}
            full = f"{self.parent}/jobs/{resource.inputs['name']}"
            if full in backend.jobs:
                backend.jobs[full].spec.update(spec)
            else:
                backend.create_job(self.parent, resource.inputs["name"], spec)
        return self._outputs()  # part of the update's result (Automation API: UpResult.outputs), not a call

    def _secrets(self) -> dict[str, str]:
        """Like the program's Secrets component: each declared secret exists with a first version (generated,
        or composed of the others); returns the version the program pins when the release names none."""
        from google.api_core import exceptions as gexc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager_v1

        client = secretmanager_v1.SecretManagerServiceClient(credentials=AnonymousCredentials())
        project = f"projects/{self.stack.project}"
        values: dict[str, str] = {}
        pinned: dict[str, str] = {}
        facts = {"db_user": "app", "db_name": "app", "db_connection": naming.connection(self.stack)}
        facts["db_socket"] = facts["db_host"] = f"/cloudsql/{facts['db_connection']}"
        ordered = sorted(self.stack.secrets.items(), key=lambda item: item[1].source == "composed")
        for name, secret in ordered:
            sid = naming.secret(self.stack, name)
            try:
                latest = client.access_secret_version(name=f"{project}/secrets/{sid}/versions/latest")
                values[name], pinned[name] = latest.payload.data.decode(), latest.name.rsplit("/", 1)[-1]
                continue
            except gexc.NotFound:
                pass
            if secret.source == "provided":
                continue
            value = secret.template.format(**facts, **values) if secret.template else token_hex(secret.bytes)
            client.create_secret(parent=project, secret_id=sid,
                                 secret={"replication": {"automatic": {}}})
            version = client.add_secret_version(parent=f"{project}/secrets/{sid}", payload={"data": value.encode()})
            values[name], pinned[name] = value, version.name.rsplit("/", 1)[-1]
        return pinned

    def _users(self) -> None:
        """Like the program's Database component: the role's two logins, the first with the password secret's
        first version, the second with a random password (later passwords are deployctl's)."""
        db = self.stack.database
        if self.sql is None or db is None:
            return
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager_v1

        instance = naming.instance(self.stack)
        if self.sql.has_user(instance, db.logins[0]):
            return  # created on an earlier up; passwords are deployctl's from then on
        client = secretmanager_v1.SecretManagerServiceClient(credentials=AnonymousCredentials())
        first = f"projects/{self.stack.project}/secrets/{naming.secret(self.stack, db.password_secret)}/versions/1"
        password = client.access_secret_version(name=first).payload.data.decode()
        self.sql.create_user(instance, db.logins[0], password)
        self.sql.create_user(instance, db.logins[1], token_hex(16))


def _template(template: dict[str, Any]) -> run_v2.RevisionTemplate:
    """The part of a synthesized service template the fake Cloud Run needs: revision name, image, env."""
    container = template["containers"][0]
    env = []
    for var in container.get("envs", []):
        ref = (var.get("valueSource") or {}).get("secretKeyRef")
        if ref:
            source = run_v2.EnvVarSource(secret_key_ref=run_v2.SecretKeySelector(secret=ref["secret"],
                                                                                 version=ref["version"]))
            env.append(run_v2.EnvVar(name=var["name"], value_source=source))
        else:
            env.append(run_v2.EnvVar(name=var["name"], value=var.get("value", "")))
    return run_v2.RevisionTemplate(revision=template["revision"],
                                   containers=[run_v2.Container(image=container["image"], env=env)])


def _traffic(target: dict[str, Any]) -> run_v2.TrafficTarget:
    kind = run_v2.TrafficTargetAllocationType[target["type"]]
    return run_v2.TrafficTarget(type_=kind, revision=target.get("revision", ""), percent=int(target["percent"]),
                                tag=target.get("tag", ""))
