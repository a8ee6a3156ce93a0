"""A fake infrastructure engine: applies ``deployctl:release`` to the fake Cloud Run the way the Pulumi
program does (service template named by ``release.revisions`` with pinned secrets, traffic as written or
100 % to the template on a new service; jobs pointed at the job service's image).

It stands in for running infra/ under Pulumi mocks until deployctl/targets/gcp/synth.py exists; every
``up`` and ``record`` is kept so tests can assert what deployctl wrote to the stack config.
"""

from __future__ import annotations

from secrets import token_hex
from typing import Any

from drongo import get_backend
from google.cloud import run_v2

from deployctl.config import Release, Stack
from infra import naming  # the fake applies what the program would create, under the program's names
from tests.fakes.cloudrun import FakeRunServices
from tests.fakes.sqladmin import FakeSqlAdmin

_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


class FakeEngine:
    def __init__(self, stack: Stack, run: FakeRunServices, sql: FakeSqlAdmin | None = None) -> None:
        self.stack = stack
        self.run = run
        self.sql = sql
        self.ups: list[Release] = []
        self.records: list[Release] = []
        self.parent = f"projects/{stack.project}/locations/{stack.region}"

    def check(self) -> None:
        pass

    def outputs(self) -> dict[str, Any]:
        return {"db_connection": naming.connection(self.stack)}

    def refresh(self) -> None:
        pass

    def record(self, release: Release) -> None:
        self.records.append(release)

    def up(self, release: Release) -> dict[str, Any]:
        self.ups.append(release)
        created = self._secrets()
        self._users()
        for svc, config in self.stack.services.items():
            image = release.images.get(svc)
            if not image:
                continue
            env = [
                run_v2.EnvVar(
                    name=var,
                    value_source=run_v2.EnvVarSource(
                        secret_key_ref=run_v2.SecretKeySelector(
                            secret=naming.secret(self.stack, secret),
                            version=release.secret_versions.get(secret) or created[secret],
                        )
                    ),
                )
                for var, secret in sorted(config.secrets.items())
            ]
            template = run_v2.RevisionTemplate(
                revision=release.revisions[svc], containers=[run_v2.Container(image=image, env=env)]
            )
            targets = release.traffic.get(svc) or []
            traffic = [
                run_v2.TrafficTarget(type_=_REVISION, revision=t.revision, percent=t.percent, tag=t.tag or "")
                for t in targets
            ] or [run_v2.TrafficTarget(type_=_REVISION, revision=release.revisions[svc], percent=100)]
            self.run.apply(f"{self.parent}/services/{naming.service(self.stack, svc)}", template, traffic)
        self._jobs(release)
        return self.outputs()

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

    def _jobs(self, release: Release) -> None:
        backend = get_backend("cloudrun")[str(self.stack.project)]
        for name in ("migrate", "init"):
            job = getattr(self.stack.jobs, name)
            image = release.images.get(self.stack.job_service(job)) if job else None
            if not image:
                continue
            job_id = naming.job(self.stack, self.stack.job_service(job), name)
            spec = {"template": {"template": {"containers": [{"image": image, "command": job.command}]}}}
            full = f"{self.parent}/jobs/{job_id}"
            if full in backend.jobs:
                backend.jobs[full].spec.update(spec)
            else:
                backend.create_job(self.parent, job_id, spec)
