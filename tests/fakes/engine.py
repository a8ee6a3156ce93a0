"""A fake infrastructure engine with Pulumi's semantics: a state of what the last ``up`` applied, diffs
against it, ``ignore_changes``, and ``preview``.

``up`` runs the real Pulumi program (deployctl/infra/) under Pulumi's mocks with the release deployctl hands
it, and works out what the engine would send, the way Pulumi documents it ("Resource option: ignoreChanges":
an ignored property takes the old value from the state, except when the resource is created; the live value
is never read without a refresh). Resources whose goal differs from the state are created or updated, and
the Cloud Run services and jobs among them are applied to the fake Cloud Run with exactly those inputs
(revision name, image, env, pinned secret versions, traffic and tags) — stale ignored values included. So a
test fails when the program and deployctl disagree on a name, a pin or the traffic, and Cloud Run refuses
what it would refuse. ``preview`` is a hand-run ``pulumi preview``: the program with no release.

What the mocks cannot give (real random secret values, the Cloud SQL users' first passwords) is created
here the way the providers would.

Every call deployctl makes (``check``, ``outputs``, ``refresh``, ``up``, with the release it handed over)
and the state are kept in one :class:`PulumiBackend`: the fake's remote state, like the state backend
every ``pulumi`` run of a project shares. A test makes one and hands it to every FakeEngine it creates
(GcpTarget gets a new engine each time it is built), so counts read after the fact are the calls of the
whole test, not of an engine created to read them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from secrets import token_hex
from typing import Any

import grpc
from drongo import get_backend
from google.cloud import run_v2

from deployctl import naming  # the fake applies what the program would create, under the program's names
from deployctl.config import Release, Stack
from deployctl.targets.gcp.engine import command_error
from deployctl.targets.gcp.synth import Synthesis, synthesize
from tests.fakes.builds import FakeRegistry
from tests.fakes.cloudrun import FakeRunServices
from tests.fakes.grpcfake import FakeError
from tests.fakes.iam import Project, image_checks, unauthenticated
from tests.fakes.sqladmin import FakeSqlAdmin


@dataclass(frozen=True)
class EngineCall:
    stack: str
    method: str  # check, outputs, refresh or up
    release: Release | None = None  # what up handed the program


@dataclass(frozen=True)
class Applied:
    type: str
    inputs: dict[str, Any]  # as the engine last sent them (ignored properties hold the old values)


@dataclass
class PulumiBackend:
    """Every engine call of a test, in order, whichever FakeEngine made it, and each stack's state."""

    calls: list[EngineCall] = field(default_factory=list)
    state: dict[str, dict[str, Applied]] = field(default_factory=dict)  # stack -> resource name -> applied

    def methods(self, stack: str) -> list[str]:
        return [c.method for c in self.calls if c.stack == stack]

    def releases(self, stack: str) -> list[Release]:
        """The releases ``up`` handed *stack*'s program, oldest first."""
        return [c.release for c in self.calls if c.stack == stack and c.method == "up" and c.release]


@dataclass(frozen=True)
class Change:
    op: str  # create, update or delete
    name: str
    type: str
    goal: dict[str, Any]  # what the engine sends (empty for a delete)


class FakeEngine:
    def __init__(self, stack: Stack, run: FakeRunServices, backend: PulumiBackend,
                 sql: FakeSqlAdmin | None = None, registry: FakeRegistry | None = None,
                 project: Project | None = None, credentials: Any = None) -> None:
        self.stack = stack
        self.run = run
        self.sql = sql
        self.registry = registry
        self.project = project  # a twin project: the program's grants and APIs are applied to it
        self.credentials = credentials  # who runs `pulumi up` (its provider calls Google as them)
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

    @property
    def state(self) -> dict[str, Applied]:
        return self.backend.state.setdefault(self.stack.name, {})

    def preview(self) -> list[Change]:
        """A hand-run ``pulumi preview``: the program without a release, diffed against the state."""
        return self._diff(synthesize(self.stack.model_copy(update={"release": Release()})))

    def up(self, release: Release) -> dict[str, Any]:
        """Run the real program (deployctl/infra/) under Pulumi mocks with this release, diff it against the
        state and apply the changed services and jobs to the fakes. Secrets and database users are created
        here with real random values, as the providers would (under mocks every generated value is the same
        placeholder)."""
        self._call("up", release)
        self._secrets()
        self._users()
        synthesis = synthesize(self.stack.model_copy(update={"release": release}))
        if self.project is not None:  # the rights a release has come from the program itself
            self.project.apply_program_bindings(synthesis.resources, self.stack.name)
        changes = self._diff(synthesis)
        try:
            self._apply(changes)
        except FakeError as exc:  # Google refused a resource: the up fails as `pulumi up` reports it, and
            # deployctl reads that output as it reads the real CLI's
            raise command_error(f"error: {exc.message}") from None
        for change in changes:
            if change.op == "delete":
                self.state.pop(change.name)
            else:
                self.state[change.name] = Applied(change.type, change.goal)
        # the invoker bindings the program declares replace the services' previous ones (an up converges)
        ours = {str(r.inputs["name"]) for r in synthesis.of_type("gcp:cloudrunv2/service:Service")}
        self.run.http.public -= ours
        for member in synthesis.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember"):
            if member.inputs.get("member") == "allUsers" and member.inputs.get("role") == "roles/run.invoker":
                self.run.http.public.add(str(member.inputs.get("name", "")).rsplit("/", 1)[-1])
        return self._outputs()  # part of the update's result (Automation API: UpResult.outputs), not a call

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if change.type == "gcp:cloudrunv2/service:Service":
                self._apply_service(change)
            elif change.type == "gcp:cloudrunv2/job:Job":
                self._apply_job(change)
            elif change.type == "gcp:artifactregistry/repository:Repository" and self.registry is not None:
                self.registry.repositories.add(str(change.goal["repositoryId"]))

    def _diff(self, synthesis: Synthesis) -> list[Change]:
        """What the engine would do: each custom resource's goal (program inputs, with every ignore_changes
        path taken from the state when the resource exists) against the inputs it last sent."""
        changes, declared = [], set()
        for resource in (r for r in synthesis.resources if r.custom):
            declared.add(resource.name)
            old = self.state.get(resource.name)
            goal = copy.deepcopy(resource.inputs)
            if old is not None:
                for path in resource.ignore_changes:
                    _copy_path(old.inputs, goal, path)
            if old is None or old.inputs != goal:
                changes.append(Change("create" if old is None else "update", resource.name, resource.type, goal))
        changes += [Change("delete", name, applied.type, {}) for name, applied in self.state.items()
                    if name not in declared]
        return changes

    def _apply_service(self, change: Change) -> None:
        goal = change.goal
        if change.op == "delete":
            raise AssertionError(f"this up would delete the Cloud Run service {change.name}")
        traffic = [_traffic(t) for t in goal.get("traffics") or []]
        template = _template(goal["template"])
        self._caller_reads(c.image for c in template.containers)
        self.run.apply(f"{self.parent}/services/{goal['name']}", template, traffic)

    def _apply_job(self, change: Change) -> None:
        if change.op == "delete":
            raise AssertionError(f"this up would delete the Cloud Run job {change.name}")
        task = change.goal["template"]["template"]
        template = _template({"containers": [task["containers"][0]], "volumes": task.get("volumes") or []})
        spec = {"template": {"template": {"containers": [run_v2.Container.to_dict(template.containers[0])]}}}
        # the task's Cloud SQL volume, retries and timeout: what the twin's runtime runs an execution with
        spec["template"]["template"].update(
            service_account=str(task.get("serviceAccount") or ""),
            volumes=[run_v2.Volume.to_dict(v) for v in template.volumes],
            max_retries=int(task.get("maxRetries", 3)), timeout=str(task.get("timeout", "600s")))
        self._caller_reads(c.image for c in template.containers)
        backend = get_backend("cloudrun")[str(self.stack.project)]
        full = f"{self.parent}/jobs/{change.goal['name']}"
        refusal = self.run.project.pull_refusal(full, template.containers[0].image) if self.run.project else None
        if refusal:  # the provider's create/update waits on Cloud Run's operation, which ends in this error.
            # Google documents the message, not the code: FAILED_PRECONDITION is the twin's choice (as drongo_ext.py's)
            raise FakeError(grpc.StatusCode.FAILED_PRECONDITION, refusal)
        if full in backend.jobs:
            backend.jobs[full].spec.update(spec)
        else:
            backend.create_job(self.parent, change.goal["name"], spec)

    def _caller_reads(self, images: Iterable[str]) -> None:
        """Cloud Run checks that whoever creates or updates a service or job may read its images (tests/fakes/iam.py,
        5); the provider calls it as the up's caller, whose credentials the engine holds. Checked in a twin
        project (the legacy cloud's owner may read everything); the refusal is the twin's 403 for that call."""
        if self.project is None:
            return
        member = getattr(self.credentials, "member", None)
        if member is None:  # no twin credentials: Google would not know who calls (tests/fakes/iam.py, 1)
            denial = unauthenticated("run.googleapis.com", "pulumi up", missing=True)
            raise FakeError(grpc.StatusCode.UNAUTHENTICATED, denial.message)
        denial = self.project.deny(member, "run.googleapis.com", image_checks(images))
        if denial is not None:
            raise FakeError(grpc.StatusCode.PERMISSION_DENIED, denial.message)

    def _secrets(self) -> dict[str, str]:
        """Like the program's Secrets component: each declared secret exists with a first version (generated,
        or composed of the others); returns the version the program pins when the release names none."""
        from google.api_core import exceptions as gexc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager_v1

        client = secretmanager_v1.SecretManagerServiceClient(credentials=self.credentials or AnonymousCredentials())
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
        client = secretmanager_v1.SecretManagerServiceClient(credentials=self.credentials or AnonymousCredentials())
        first = f"projects/{self.stack.project}/secrets/{naming.secret(self.stack, db.password_secret)}/versions/1"
        password = client.access_secret_version(name=first).payload.data.decode()
        self.sql.create_user(instance, db.logins[0], password)
        self.sql.create_user(instance, db.logins[1], token_hex(16))


def _template(template: dict[str, Any]) -> run_v2.RevisionTemplate:
    """A synthesized template as the Cloud Run API gets it: revision name, scaling, the Cloud SQL volumes, and per
    container the image, command, env (plain and secret references), resource limits, port, startup probe and
    volume mounts."""
    containers = []
    for container in template["containers"]:
        env = []
        for var in container.get("envs", []):
            ref = (var.get("valueSource") or {}).get("secretKeyRef")
            if ref:
                source = run_v2.EnvVarSource(secret_key_ref=run_v2.SecretKeySelector(secret=ref["secret"],
                                                                                     version=ref["version"]))
                env.append(run_v2.EnvVar(name=var["name"], value_source=source))
            else:
                env.append(run_v2.EnvVar(name=var["name"], value=var.get("value", "")))
        limits = (container.get("resources") or {}).get("limits") or {}
        containers.append(run_v2.Container(image=container["image"], command=container.get("commands") or [],
                                           env=env, resources=run_v2.ResourceRequirements(limits=limits),
                                           **_runtime_fields(container)))
    scaling = template.get("scaling") or {}
    volumes = [run_v2.Volume(name=v["name"], cloud_sql_instance=run_v2.CloudSqlInstance(
        instances=list(v["cloudSqlInstance"].get("instances") or []))) for v in template.get("volumes") or []
        if v.get("cloudSqlInstance")]
    return run_v2.RevisionTemplate(
        revision=template.get("revision", ""), containers=containers, volumes=volumes,
        service_account=str(template.get("serviceAccount") or ""),
        scaling=run_v2.RevisionScaling(min_instance_count=int(scaling.get("minInstanceCount", 0)),
                                       max_instance_count=int(scaling.get("maxInstanceCount", 0))),
    )


def _runtime_fields(container: dict[str, Any]) -> dict[str, Any]:
    """What the twin's runtime (tests/fakes/runtime.py) starts an instance with: the container port, the
    startup probe and the volume mounts, as the program sets them."""
    fields: dict[str, Any] = {}
    port = (container.get("ports") or {}).get("containerPort")
    if port:
        fields["ports"] = [run_v2.ContainerPort(container_port=int(port))]
    probe = container.get("startupProbe") or {}
    if probe.get("httpGet") is not None:
        fields["startup_probe"] = run_v2.Probe(
            http_get=run_v2.HTTPGetAction(path=probe["httpGet"].get("path", "/")),
            period_seconds=int(probe.get("periodSeconds", 10)), timeout_seconds=int(probe.get("timeoutSeconds", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)))
    mounts = container.get("volumeMounts") or []
    if mounts:
        fields["volume_mounts"] = [run_v2.VolumeMount(name=m["name"], mount_path=m["mountPath"]) for m in mounts]
    return fields


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _copy_path(source: dict[str, Any], target: dict[str, Any], path: str) -> None:
    """Set *path* (Pulumi's property path syntax, ``template.containers[0].image``) in *target* to its value in
    *source*; a path *source* lacks is left as *target* has it (no prior value: the program's is used)."""
    steps: list[str | int] = [key if key else int(index) for key, index in _STEP.findall(path)]
    value: Any = source
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return
    node: Any = target
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    node[steps[-1]] = copy.deepcopy(value)


def _traffic(target: dict[str, Any]) -> run_v2.TrafficTarget:
    kind = run_v2.TrafficTargetAllocationType[target["type"]]
    return run_v2.TrafficTarget(type_=kind, revision=target.get("revision", ""), percent=int(target["percent"]),
                                tag=target.get("tag", ""))
