"""GcpTarget: the Target protocol for ``gcp`` stacks, composed from one small facade per Google API.

Stage mapping: build → Artifact Registry lookup / Cloud Build (on a stack's very first release, after an
``infra`` apply that creates the image repository); secrets → Secret Manager; prepare → only when the
infrastructure fingerprint (the stack's settings and the program's version) differs from the last apply's,
an ``infra`` ``pulumi up`` (everything but new revisions: jobs, secrets, database, identities); migrate/init
→ Cloud Run Jobs, each first set to the release's image and pins (a failed one is explained from its output in
Cloud Logging); deploy → when prepare applied, a ``release`` ``pulumi up`` whose templates are the candidate
revisions (after the migrations, so no code runs on a schema it does not expect), else the candidate through
the Cloud Run API; promote and rollback → Cloud Run traffic updates; ledger, lock and the infrastructure
record → the stack's GCS state bucket.
No command writes a stack file: the boundary is in docs/gcp.md.

Rules: every client is a constructor argument (tests pass clients bound to fakes; ``open_target`` builds
the real ones lazily, after checking the pulumi CLI and Google credentials, so a missing tool changes
nothing). Revision names are derived from what the revision runs (image, pinned secrets, settings), so
``pulumi up`` and ``deploy`` agree on them and a rerun finds the revision it already made.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from deployctl import __version__, naming
from deployctl.config import Job, Release, Stack, TrafficTarget
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.facts import render_env, uses_db_facts
from deployctl.migration_state import MigrationState
from deployctl.pipeline import dblogins
from deployctl.pipeline.model import Artifact, JobRun, JobState, Revision, Split
from deployctl.pipeline.target import DataLoss
from deployctl.targets.down import check_down
from deployctl.targets.gcp.builds import Builds, source_hash
from deployctl.targets.gcp.engine import Engine, PulumiEngine
from deployctl.targets.gcp.retry import (
    CREDENTIALS_HINT,
    IAM_PROPAGATION_S,
    RetryPolicy,
    caller_identity,
    member,
    translate,
)
from deployctl.targets.gcp.run_jobs import CloudRunJobs, JobSpec
from deployctl.targets.gcp.run_logs import BUDGET_S, ExecutionLogs
from deployctl.targets.gcp.run_services import CANDIDATE_TAG, CloudRunServices, Spec
from deployctl.targets.gcp.secrets import SecretManager
from deployctl.targets.gcp.sql_users import CloudSqlUsers, sqladmin_client
from deployctl.targets.gcp.state import GcsLedger, GcsLock, InfraRecord


class GcpTarget:
    name = "gcp"
    ordered_by_commit = True  # a shared stack: pushes may release out of order, so an older commit is refused
    jobs_outlive_the_cli = True  # its executions run in Cloud Run: a stopped command leaves them running

    def __init__(
        self,
        stack: Stack,
        root: Path,
        *,
        engine: Engine,
        services: Any,
        revisions: Any,
        jobs: Any,
        executions: Any,
        secrets: Any,
        storage: Any,
        builds: Any,
        registry: Any,
        sqladmin: Any = None,
        logging: Any = None,
        id_token: Callable[[str], str] | None = None,
        policy: RetryPolicy | None = None,
        progress: Callable[[str], None] | None = None,
        poll_s: float = 3.0,
        stale_lock_s: float = 600.0,
    ) -> None:
        engine.check()  # before anything else: a missing tool must leave everything untouched
        assert stack.project and stack.region  # config validation guarantees both for gcp stacks
        self.stack, self.root, self.engine = stack, root, engine
        self.policy = policy or RetryPolicy()
        self.progress = progress or (lambda line: print(line, file=sys.stderr))
        self.policy.propagation.say = self.progress
        self._id_token = id_token or (lambda audience: fetch_id_token(audience, self.stack.name))
        self._tokens: dict[str, str] = {}
        project, region = stack.project, stack.region
        self.names = naming  # the program's naming rules, so deployctl addresses what Pulumi created
        self.run = CloudRunServices(
            services, revisions, project, region, self.policy, cloud_name=lambda svc: self.names.service(stack, svc),
            poll_s=min(poll_s, 1.0),
        )
        # a failed job's output is read from Cloud Logging through *logging* (an authorized requests session);
        # without one, a failed job says only what Cloud Run says
        logs = ExecutionLogs(logging, project, region, min(self.policy.call_timeout_s, BUDGET_S)) if logging else None
        self.jobs = CloudRunJobs(jobs, executions, project, region, self.policy, poll_s=poll_s, logs=logs)
        self.secrets = SecretManager.of_stack(secrets, stack, self.policy)
        self.secret_prefix = self.secrets.prefix
        self.builds = Builds(
            builds, registry, storage, project, region, self.names.repository(stack), self.policy, self.progress,
            poll_s=poll_s,
            service_account=f"projects/{project}/serviceAccounts/"
                            f"{self.names.account(stack, 'build')}@{project}.iam.gserviceaccount.com",
        )
        self.sql = CloudSqlUsers(sqladmin, project, self.names.instance(stack), self.policy, poll_s=poll_s)
        bucket = stack.state_bucket
        self.state_location = f"gs://{bucket}/deployctl/{stack.name}/"
        self.ledger = GcsLedger(storage, bucket, stack.name, self.policy)
        self.lock = GcsLock(storage, bucket, stack.name, self.policy, stale_after_s=stale_lock_s)
        self.infra = InfraRecord(storage, bucket, stack.name, self.policy)
        self._applying = threading.Lock()  # builds and deploys of several services run at once; one applies
        self._pending: Release | None = None  # the release prepare's infra apply leaves for deploy's up
        self._infra_applied = False  # by this command (a first build's apply serves its release's prepare too)

    # -- read-only --------------------------------------------------------------------------------
    def source_hash(self, service: str) -> str:
        return source_hash(self.root)  # the build context is the project root (builds.py)

    def find_artifact(self, service: str, source_hash: str) -> Artifact | None:
        return self.builds.find(service, source_hash)

    def current_secret_versions(self) -> dict[str, str | None]:
        return {name: self.secrets.latest(name) for name in self.stack.secrets}

    def secret_version_states(self, name: str) -> dict[str, str]:
        return self.secrets.states(name)

    def revision_secret_versions(self, service: str, revision: str) -> dict[str, str] | None:
        info = self.run.revision(service, revision)
        return None if info is None else self._declared(info.secret_env)

    def traffic(self, service: str) -> list[Split]:
        return self.run.traffic(service)

    def revision_healthy(self, service: str, revision: str) -> bool:
        info = self.run.revision(service, revision)
        return bool(info and info.ready)

    def router_healthy(self, service: str) -> bool:
        return self.run.ready(service) is None

    def database_healthy(self) -> bool | None:
        return None  # Cloud SQL answers only inside the VPC (see check_database_login)

    def restart_router(self, service: str) -> None:
        """Cloud Run runs the front end itself: nothing to restart; say why it does not serve."""
        why = self.run.ready(service)
        if why is not None:
            raise DeployctlError(f"Cloud Run reports service {service} not ready: {why}",
                                 f"Check the service: gcloud run services describe {service} "
                                 f"--region {self.stack.region}")

    def smoke_auth(self, service: str) -> dict[str, str]:
        """A private service (no allUsers invoker) answers only requests with a Google-signed ID token whose
        audience is the service's URL (Cloud Run: "Authenticating service-to-service"); its tag URLs take
        the same audience. A public one needs nothing."""
        if self.stack.services[service].public:
            return {}
        audience = self.service_url(service)
        if audience not in self._tokens:  # an ID token lives an hour: one per service per command
            self._tokens[audience] = self._id_token(audience)
        return {"Authorization": f"Bearer {self._tokens[audience]}"}

    def service_url(self, service: str) -> str:
        svc = self.run.get(service)
        return str(svc.uri) if svc is not None and svc.uri else f"(the {service} URL, once it is created)"

    def migration_state(self) -> MigrationState | None:
        return None  # Cloud SQL has a private address only Cloud Run reaches; the migrate job logs its head

    def migration_head(self) -> str | None:
        return None

    def database_lost(self) -> DataLoss | None:
        return None  # Cloud SQL is reached from Cloud Run only; its backups restore it (docs/gcp.md, "Rollback")

    def check_database_login(self, secret_versions: dict[str, str]) -> str | None:
        return None  # Cloud SQL has a private address only Cloud Run reaches; see docs/gcp.md, "Rollback"

    def describe(self) -> dict[str, str]:
        return {
            "project": str(self.stack.project),
            "region": str(self.stack.region),
            "state": self.state_location,
            **{f"url {svc}": self.service_url(svc) for svc in self.stack.services},
        }

    # -- secrets ------------------------------------------------------------------------------------
    def ensure_secrets(self) -> dict[str, str]:
        """Pin the versions of the secrets that exist. The Pulumi program creates each declared secret and its
        first version (generated, provided or composed) on the first `pulumi up` (in ``prepare``); deployctl
        adds versions only when it rotates, so the two never both create a secret."""
        versions: dict[str, str] = {}
        for name, secret in self.stack.secrets.items():
            if not self.secrets.exists(name):
                continue  # created by the program in prepare(); the orchestrator pins it after that
            latest = self.secrets.latest(name)
            if secret.source == "generated" and latest is None:
                latest = self.secrets.add(name, secret.generate())
            if secret.source == "provided" and latest is None:
                raise PreconditionError(
                    f"secret {name} has no value yet",
                    f"Set it: deployctl secrets set {self.stack.name} {name} < file-with-the-value",
                )
            if latest is not None:
                versions[name] = latest
        for name, secret in self.stack.secrets.items():
            refs = [r for r in secret.references() if r in self.stack.secrets]
            if secret.source == "composed" and name in versions and all(r in versions for r in refs):
                versions[name] = self._compose(name, versions)  # recomposed after a rotation of what it uses
        return versions

    def _compose(self, name: str, versions: dict[str, str]) -> str:
        template = self.stack.secrets[name].template or ""
        facts = self._db_facts(versions)
        values = {
            ref: facts[ref] if ref in facts else self.secrets.value(ref, versions[ref])
            for ref in self.stack.secrets[name].references()
        }
        value = template.format(**values)
        latest = self.secrets.latest(name)
        if latest is not None and self.secrets.value(name, latest) == value:
            return latest
        return self.secrets.add(name, value)

    def _db_facts(self, versions: dict[str, str]) -> dict[str, str]:
        """The program's facts, logged in as the login the password's version belongs to."""
        db = self.stack.database
        return naming.cloud_sql_facts(self.stack, self._login(versions.get(db.password_secret, ""))) if db else {}

    def add_secret_version(self, name: str, value: str | None) -> str:
        if value is None:
            value = self.stack.secrets[name].generate()
        db = self.stack.database
        if db is None or name != db.password_secret:
            return self.secrets.add(name, value)
        # the idle login gets the password before anything uses it; the serving login is never touched
        labels = self.secrets.labels(name)
        enabled = self.secrets.enabled_versions(name)
        login = dblogins.idle_login(db, enabled, _recorded_logins(labels))
        self.sql.set_password(login, value)
        version = self.secrets.add(name, value)
        self.secrets.set_labels(name, {**labels, f"{_LOGIN_LABEL}{version}": login})
        return version

    def disable_secret_versions(self, name: str, keep: Iterable[str]) -> list[str]:
        """Disable old versions after the drain period, sparing any that a serving or tagged revision uses.

        For the database password, a login no enabled version uses any more gets a password nobody knows.
        """
        time.sleep(self.stack.rollout.drain_s)  # requests in flight on the old revision finish first
        spared = set(keep) | self._referenced(name)
        disabled = []
        for version in self.secrets.enabled_versions(name):
            if version not in spared:
                self.secrets.disable(name, version)
                disabled.append(version)
        db = self.stack.database
        if disabled and db is not None and name == db.password_secret:
            labels = self.secrets.labels(name)
            enabled = self.secrets.enabled_versions(name)
            for login in dblogins.freed_logins(db, disabled, enabled, _recorded_logins(labels)):
                self.sql.set_password(login, dblogins.unknown_password())
            stale = {f"{_LOGIN_LABEL}{v}" for v in disabled}  # a secret holds at most 64 labels
            self.secrets.set_labels(name, {k: v for k, v in labels.items() if k not in stale})
        return disabled

    def _login(self, version: str) -> str:
        db = self.stack.database
        assert db is not None
        return dblogins.login_of(db, _recorded_logins(self.secrets.labels(db.password_secret)), version)

    def _referenced(self, secret: str) -> set[str]:
        used, secret_id = set(), self.secrets.secret_id(secret)
        for service in self.stack.services:
            for split in self.run.traffic(service):
                if split.percent == 0 and not split.tag:
                    continue
                info = self.run.revision(service, split.revision)
                used |= {v for s, v in (info.secret_env.values() if info else []) if s == secret_id}
        return used

    # -- infrastructure and jobs --------------------------------------------------------------------
    def infra_fingerprint(self) -> str:
        """What a ``pulumi up`` applies besides the release: the stack's settings and the program's version."""
        return f"{self.stack.fingerprint()}-{__version__}"

    def apply_reason(self) -> str | None:
        """Why the infrastructure needs a ``pulumi up`` now, or None (a code-only release needs none)."""
        applied, _ = self.infra.read()
        if applied is None or applied.get("fingerprint") is None:
            return "the stack's first release"
        if applied["fingerprint"] != self.infra_fingerprint():
            return "the stack's settings (or deployctl's program) changed"
        missing = [f"service {svc}" for svc in self.stack.services if self.run.get(svc) is None]
        missing += [f"secret {name}" for name in self.stack.secrets if not self.secrets.exists(name)]
        return f"{', '.join(missing)} no longer exist{'s' if len(missing) == 1 else ''}" if missing else None

    def prepare(self, artifacts: dict[str, Artifact], secret_versions: dict[str, str], *,
                infrastructure: bool = True) -> None:
        """Before the migrations: when the infrastructure changed, apply everything but new revisions (the jobs
        pinned to this release, secrets, the database, identities); the candidates wait for deploy. A rotation
        (``infrastructure=False``) applies nothing: it changes a secret, and a pending settings change waits for
        the next release, which the rotation's record leaves to be made."""
        reason = self.apply_reason() if infrastructure else None
        if reason is None:
            return  # the program's settings are applied; deploy and the jobs take the release through the API
        images = {svc: a.ref for svc, a in artifacts.items()}
        # a secret that does not exist yet is created by the up at version 1 (Secret Manager numbers a
        # secret's versions from 1): name the revision as deploy() will once it is pinned to that version, so
        # the first release makes one revision, not one in the up and another in deploy
        named = {**{name: "1" for name in self.stack.secrets}, **secret_versions}
        env = {svc: self._fact_env(svc, named) for svc in artifacts}
        settings = self.infra_fingerprint()  # what the release up will have applied
        revisions = {svc: self._revision_name(svc, a.ref, named, env[svc], settings) for svc, a in artifacts.items()}
        release = self._release(images, secret_versions, revisions, env)
        with self._applying:
            if not self._infra_applied:  # jobs take the release's image and pins through the API anyway
                self._apply_infra(f"pulumi up: {reason} (before the migrations: no new revision yet)", release)
            self._pending = release

    def _apply_infra(self, say: str, release: Release) -> None:
        existing = [svc for svc in self.stack.services if self.run.get(svc) is not None]
        self.progress(say)
        self.engine.up(release.model_copy(update={"phase": "infra", "existing": existing}))
        self._infra_applied = True
        if self.infra.read()[0] is None:
            self.infra.write(None)  # applied once: the next release starts from what exists
        # the program grants identities their roles: calls made as them may see 403 a while
        self.policy.propagation.begin("the IAM bindings `pulumi up` applied", IAM_PROPAGATION_S)

    def _apply_release(self) -> None:
        """After the migrations, once for all services: the ``pulumi up`` whose templates are the candidates."""
        with self._applying:
            pending, self._pending = self._pending, None  # tried once: a sibling deploy must not run it again
            if pending is None:
                return
            self.progress("pulumi up: the candidate revisions")
            self.engine.up(pending)
            self.infra.write(self.infra_fingerprint())

    def _first_build(self) -> None:
        """A stack's first build pushes to a repository, as an identity, that only the program creates: apply
        the infrastructure (no services yet) first, once."""
        with self._applying:
            if self.infra.read()[0] is None:
                self._apply_infra("pulumi up: the stack's first (registry, identities, secrets, database, jobs)",
                                  Release(phase="infra"))

    def _release(self, images: dict[str, str], versions: dict[str, str], revisions: dict[str, str],
                 env: dict[str, dict[str, str]] | None = None) -> Release:
        traffic = {}
        for svc in self.stack.services:
            # the live split and the tags of retained revisions: what the up must write back unchanged
            live = [s for s in self.run.traffic(svc) if s.percent > 0 or s.tag]
            if any(s.percent for s in live):
                traffic[svc] = [TrafficTarget(revision=s.revision, percent=s.percent, tag=s.tag) for s in live]
        env = {svc: values for svc, values in (env or {}).items() if values}
        return Release(phase="release", images=images, secret_versions=versions, revisions=revisions,
                       traffic=traffic, env=env)

    def _applied_settings(self) -> str:
        """The infrastructure fingerprint of the last ``pulumi up`` that made candidates ("" before one)."""
        applied, _ = self.infra.read()
        return str((applied or {}).get("fingerprint") or "")

    def _revision_name(self, service: str, image: str, versions: dict[str, str],
                       env: dict[str, str] | None = None, settings: str | None = None,
                       replaces: str | None = None) -> str:
        """Named after what the revision runs: its image, pins and env, and the settings its template carries —
        those of the last ``pulumi up`` (its infrastructure fingerprint), not the stack file's, which a command
        that applies nothing (a rotation, a code-only release) does not put in the template it copies."""
        used = self.stack.services[service].secrets.values()
        data: dict[str, object] = {
            "image": image,
            "secrets": {name: versions.get(name) for name in sorted(used)},
            "settings": settings if settings is not None else self._applied_settings(),
        }
        if env:  # the login in {db_user} changes with the password version, even where no secret env does
            data["env"] = env
        if replaces:  # the same configuration again, after that revision's instances crashed (see _crashed)
            data["replaces"] = replaces
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        return self.names.revision(self.stack, service, digest)

    def run_job(
        self, name: str, job: Job, artifact: Artifact, secret_versions: dict[str, str], release_id: str
    ) -> JobRun:
        owner = self.stack.job_service(job)
        job_id = self.names.job(self.stack, owner, name)
        spec = JobSpec(artifact.ref, self._secret_env(owner, secret_versions), self._fact_env(owner, secret_versions))
        if not job.blocking:  # started and left to run; the pipeline reports it as not awaited
            return self.jobs.run(job_id, spec, release_id, deadline_s=0)
        deadline = job.timeout_s * (job.retries + 1) + 120
        values = self._secret_values(secret_versions)
        result = self.jobs.run(job_id, spec, release_id, deadline_s=deadline, secret_values=values)
        wait = self.policy.initial_s
        # Cloud Run resolves a task's secrets as the job's identity when the task starts; right after `pulumi up`
        # granted that identity its secrets, the grant may not have reached Secret Manager yet (IAM: "typically
        # 2 minutes, potentially 7 minutes or longer"): the execution fails before any code ran, so it is run
        # again until the window closes (the job's own retries come too fast to outlast it)
        while result.state is JobState.FAILED and self.policy.propagation.active() and _secret_denied(result.message):
            self.progress(f"{name}: its identity may not read its secrets yet; waiting for "
                          f"{self.policy.propagation.what} to propagate, then running it again")
            time.sleep(wait)
            wait = min(wait * 2, self.policy.maximum_s)
            result = self.jobs.run(job_id, spec, release_id, deadline_s=deadline, secret_values=values)
        return result

    def _secret_values(self, secret_versions: dict[str, str]) -> Callable[[float], list[str]]:
        """Reads the values of the release's pinned secret versions, longest first, to take out of a failed job's
        output (read only when a line of it is quoted), all within the seconds it is given. A job's env holds its
        service's secrets, and a composed one (DATABASE_URL) holds the others' values, so every pinned version
        counts."""
        def values(within_s: float) -> list[str]:
            end, read = time.monotonic() + within_s, set()
            for name, version in secret_versions.items():
                left = end - time.monotonic()
                if left <= 0:
                    raise DeployctlError("no time left to read the secret values to take out of the job's output")
                read.add(self.secrets.within(left).value(name, version))
            return sorted((v for v in read if len(v) >= 6), key=len, reverse=True)

        return values

    def _secret_env(self, service: str, secret_versions: dict[str, str]) -> dict[str, tuple[str, str]]:
        """ENV -> (secret id, pinned version) of *service* (and of the jobs that run its image)."""
        declared = self.stack.services[service].secrets
        return {env: (self.secrets.secret_id(secret), secret_versions[secret]) for env, secret in declared.items()}

    # -- revisions and traffic ----------------------------------------------------------------------
    def deploy(self, service: str, artifact: Artifact, secret_versions: dict[str, str], release_id: str) -> Revision:
        self._apply_release()  # when prepare applied the infrastructure: the up that makes the candidates
        secret_env = self._secret_env(service, secret_versions)
        env = self._fact_env(service, secret_versions)
        name = self._revision_name(service, artifact.ref, secret_versions, env)
        for _ in range(20):  # a serving revision of this name whose instances crashed: make a fresh one
            if not self._crashed(service, name):
                break
            name = self._revision_name(service, artifact.ref, secret_versions, env, replaces=name)
        spec = Spec(name, artifact.ref, secret_env, {"deployctl-release": release_id.lower()}, env)
        info = self.run.deploy(service, spec)
        url = self.run.tag_url(service, CANDIDATE_TAG) or self.service_url(service)
        return Revision(service, info.name, url, artifact.ref, dict(secret_versions))

    def _crashed(self, service: str, name: str) -> bool:
        """The revision *name* exists, gets traffic and is not Ready: its instances failed after it was promoted.
        Cloud Run does not make such a revision Ready again, and a revision's name is unique (reusing it keeps
        the failed revision), so its replacement from the same image needs a name of its own."""
        info = self.run.revision(service, name)
        return info is not None and not info.ready and any(
            s.revision == name and s.percent for s in self.run.traffic(service))

    def set_traffic(self, service: str, splits: list[Split]) -> None:
        live = {s.revision for s in self.run.traffic(service) if s.percent}
        if sum(s.percent for s in splits) < 100 and live == {s.revision for s in splits}:
            return  # a first release: Cloud Run already gives the only revision 100 %, there is no "previous"
        self.run.set_traffic(service, splits)

    def ensure_revision(self, service: str, revision: str) -> Revision:
        info = self.run.revision(service, revision)
        if info is None:
            raise DeployctlError(
                f"revision {revision} of {service} no longer exists in Cloud Run",
                f"Pick a newer release from `deployctl releases {self.stack.name}`.",
            )
        if not info.ready:
            raise DeployctlError(f"revision {revision} cannot serve: {info.message}", "Pick another release.")
        versions = self._declared(info.secret_env)
        return Revision(service, revision, self.service_url(service), info.image, versions)

    def _fact_env(self, service: str, versions: dict[str, str]) -> dict[str, str]:
        """The env values that use the database facts, as the login of the pinned password version (without
        a release the program fills them in as the first login, which a rotation moves away from); the
        release carries them to the program (``Release.env``) and deploy() to a revision it creates."""
        env = {k: v for k, v in self.stack.services[service].env.items() if uses_db_facts({k: v})}
        return render_env(env, self._db_facts(versions)) if env else {}

    def _declared(self, secret_env: dict[str, tuple[str, str]]) -> dict[str, str]:
        """Secret ids in a revision back to the names the stack declares."""
        return {secret.removeprefix(self.secret_prefix): version for secret, version in secret_env.values()}

    def discard(self, service: str, revision: str) -> None:
        self.run.drop_tags(service, {revision})

    def retire(self, service: str, keep: list[str]) -> None:
        serving = {s.revision for s in self.run.traffic(service) if s.percent}
        stale = {s.revision for s in self.run.traffic(service) if s.tag and s.tag != CANDIDATE_TAG}
        self.run.drop_tags(service, stale - set(keep) - serving)

    def down(self, purge: bool, confirm: Callable[[], None]) -> list[str]:
        check_down(self.stack)  # always refuses: nothing of a gcp stack runs on this machine
        return []

    # -- CLI helpers ---------------------------------------------------------------------------------
    def build(self, service: str, source_hash: str) -> Artifact:
        self._first_build()
        svc = self.stack.services[service]
        return self.builds.build(service, source_hash, self.root, svc.dockerfile)


def _secret_denied(message: str) -> bool:
    """A task or instance that could not start because its identity may not read a secret (Cloud Run:
    "Permission denied on secret: … for … service account")."""
    lower = message.lower()
    return "secret" in lower and "denied" in lower


_LOGIN_LABEL = "deployctl-login-v"  # on the password secret: which database login each version belongs to


def _recorded_logins(labels: dict[str, str]) -> dict[str, str]:
    return {k[len(_LOGIN_LABEL):]: v for k, v in labels.items() if k.startswith(_LOGIN_LABEL)}


def open_target(stack: Stack, root: Path) -> GcpTarget:
    """The production target: the pulumi CLI and Google credentials are checked before any client exists."""
    engine = PulumiEngine(stack.name, root, backend_url=f"gs://{stack.state_bucket}")
    engine.check()
    try:
        import google.auth

        credentials, _ = google.auth.default()
    except Exception as exc:
        error = translate(exc, "Google Cloud credentials")
        raise PreconditionError(error.message, CREDENTIALS_HINT) from None
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import artifactregistry_v1, run_v2, secretmanager_v1
    from google.cloud.devtools import cloudbuild_v1
    from google.cloud.storage import Client as StorageClient  # type: ignore[import-untyped]

    options = {"api_endpoint": f"{stack.region}-run.googleapis.com"}
    target = GcpTarget(
        stack,
        root,
        engine=engine,
        services=run_v2.ServicesClient(credentials=credentials, client_options=options),
        revisions=run_v2.RevisionsClient(credentials=credentials, client_options=options),
        jobs=run_v2.JobsClient(credentials=credentials, client_options=options),
        executions=run_v2.ExecutionsClient(credentials=credentials, client_options=options),
        secrets=secretmanager_v1.SecretManagerServiceClient(credentials=credentials),
        storage=StorageClient(project=stack.project, credentials=credentials),
        builds=cloudbuild_v1.CloudBuildClient(credentials=credentials),
        registry=artifactregistry_v1.ArtifactRegistryClient(credentials=credentials),
        sqladmin=sqladmin_client(credentials, RetryPolicy().call_timeout_s),
        logging=AuthorizedSession(credentials),
        policy=RetryPolicy(caller=member(caller_identity(credentials))),  # who a refusal's grant is for
    )
    engine.caller = target.policy.caller
    from deployctl.targets.gcp.bootstrap import read_passphrase

    # the target's own Secret Manager facade: same project and <stack>- prefix as bootstrap's secret
    engine.passphrase = lambda: read_passphrase(target.secrets)
    return target


def fetch_id_token(audience: str, stack: str) -> str:
    """An ID token for *audience* from Application Default Credentials: a service account's (Cloud Build,
    Workload Identity, a key) minted for that audience, or a user's from `gcloud auth application-default
    login`, which Cloud Run accepts from a user who holds run.invoker."""
    import google.auth
    import google.auth.transport.requests
    import google.oauth2.id_token
    from google.auth import exceptions as auth_exc

    request = google.auth.transport.requests.Request()
    try:
        token: str = google.oauth2.id_token.fetch_id_token(request, audience)
        return token
    except auth_exc.DefaultCredentialsError:
        pass  # user credentials: their own ID token, after a refresh
    try:
        credentials, _ = google.auth.default()
        credentials.refresh(request)
    except auth_exc.GoogleAuthError as exc:
        raise translate(exc, f"get an ID token for {audience}") from None
    user_token = getattr(credentials, "id_token", None)
    if not user_token:
        raise PreconditionError(
            f"cannot get an ID token to smoke-test the private service at {audience}",
            f"Use credentials that can mint one (a service account, or `gcloud auth application-default login`),"
            f" or make the service public in stacks/Pulumi.{stack}.yaml (services.<svc>.public: true).",
        )
    return str(user_token)
