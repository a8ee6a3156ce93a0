"""LocalTarget: the Target protocol on this machine (see docs/local.md for the Cloud Run mapping).

build → content-addressed source copy + cached venv; secrets → versioned 0600 store; database →
the stack's Postgres (providers.py); jobs → processes with retries and a timeout; revisions → processes on their own
ports; traffic → the router process behind the stable URL.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from deployctl import interrupts
from deployctl.config import Job, Stack
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.facts import DB_FACTS, render_env, uses_db_facts
from deployctl.joblog import redact
from deployctl.migration_state import MigrationState
from deployctl.pipeline import dblogins
from deployctl.pipeline.model import Artifact, JobRun, JobState, Revision, Split
from deployctl.pipeline.target import DataLoss
from deployctl.targets.local import build as builder
from deployctl.targets.local import processes as procs
from deployctl.targets.local.fs import atomic_write
from deployctl.targets.local.paths import StatePaths, cache_dir
from deployctl.targets.local.postgres import LocalDatabase
from deployctl.targets.local.secrets import SecretStore
from deployctl.targets.local.state import FileLock, SqliteLedger


class LocalTarget:
    name = "local"
    ordered_by_commit = False  # one developer's machine: an older checkout may be released (bisecting)
    jobs_outlive_the_cli = False  # its processes are this command's: a stopped command stops them

    def __init__(self, stack: Stack, root: Path, paths: StatePaths | None = None) -> None:
        self.stack = stack
        self.root = root
        self.paths = paths or StatePaths.for_stack(root, stack.name)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        # an empty ledger beside secrets or revisions is a lost one, not a new stack
        self.ledger = SqliteLedger(self.paths.ledger, (self.paths.secrets, self.paths.revisions), stack.name)
        self.lock = FileLock(self.paths.root, stack.name, working=lambda info: procs.running_jobs(
            self.paths.root / "executions", info.pid, info.pid_started))
        self.secrets = SecretStore(self.paths.secrets)
        external = stack.local.database_url
        self.db = LocalDatabase(self.paths.pgdata, stack.database, external) if stack.database else None
        self.revisions = procs.RevisionStore(self.paths.revisions)
        self._checking, self._checked = threading.Lock(), False

    # -- build ------------------------------------------------------------------------------------
    def source_hash(self, service: str) -> str:
        return builder.source_hash(self.root, self.stack.services[service].source)

    def find_artifact(self, service: str, source_hash: str) -> Artifact | None:
        return builder.find(self.paths.artifacts, service, source_hash)

    def build(self, service: str, source_hash: str) -> Artifact:
        self._check_extensions()  # before minutes of installing, not after
        source = self.stack.services[service].source
        artifact = builder.build(self.root, source, service, source_hash, self.paths.artifacts, cache_dir() / "venvs")
        self._cwd(service, artifact.ref)  # a workdir that is not in the source fails the build, not a job
        for kind in ("migrate", "init"):
            job = getattr(self.stack.jobs, kind)
            if job is not None and self.stack.job_service(job) == service:
                self._cwd(service, artifact.ref, job, kind)
        return artifact

    # -- secrets ----------------------------------------------------------------------------------
    def current_secret_versions(self) -> dict[str, str | None]:
        return {name: self.secrets.latest(name) for name in self.stack.secrets}

    def secret_version_states(self, name: str) -> dict[str, str]:
        return self.secrets.states(name)

    def _check_extensions(self) -> None:
        """The stack's extensions exist in its Postgres: checked once per command, before the first change
        (builds of several services run at once, and the server starts only once)."""
        with self._checking:
            if self.db is not None and not self._checked:
                self.db.check_extensions()
                self._checked = True

    def ensure_secrets(self) -> dict[str, str]:
        self._check_extensions()  # an artifact that was reused never built
        for name, secret in self.stack.secrets.items():
            if secret.source == "composed" or self.secrets.latest(name):
                continue
            if secret.source == "provided":
                raise PreconditionError(
                    f"secret {name} has no value yet",
                    f"Set it: deployctl secrets set {self.stack.name} {name} < file-with-the-value",
                )
            self.secrets.add(name, secret.generate())
        for name, secret in self.stack.secrets.items():
            if secret.source == "composed":
                value = self._compose(name)
                latest = self.secrets.latest(name)
                if latest is None or self.secrets.value(name, latest) != value:
                    self.secrets.add(name, value)
        return {name: v for name, v in self.current_secret_versions().items() if v}

    def _compose(self, name: str) -> str:
        secret = self.stack.secrets[name]
        refs = secret.references()
        values: dict[str, str] = {}
        if self.db and any(r in DB_FACTS for r in refs):
            values.update(self.db.facts())
            values["db_user"] = self._login(self.secrets.latest(self.db.config.password_secret))
        for ref in refs:
            if ref in self.stack.secrets:
                latest = self.secrets.latest(ref)
                if latest is None:
                    raise DeployctlError(f"secret {name} needs {ref}, which has no enabled version")
                values[ref] = self.secrets.value(ref, latest)
        assert secret.template is not None
        return secret.template.format(**values)

    def add_secret_version(self, name: str, value: str | None) -> str:
        value = value if value is not None else self.stack.secrets[name].generate()
        if self.db is None or name != self.db.config.password_secret:
            return self.secrets.add(name, value)
        # the new password goes to the idle login first, so the serving revision's login keeps working
        login = dblogins.idle_login(self.db.config, self.secrets.enabled(name), self.secrets.logins(name))
        self.db.set_password(login, value)
        return self.secrets.add(name, value, login=login)

    def disable_secret_versions(self, name: str, keep: Iterable[str]) -> list[str]:
        disabled = self.secrets.disable(name, list(keep))
        if self.db is not None and name == self.db.config.password_secret:
            recorded = self.secrets.logins(name)
            for login in dblogins.freed_logins(self.db.config, disabled, self.secrets.enabled(name), recorded):
                self.db.set_password(login, dblogins.unknown_password())
        return disabled

    def _login(self, version: str | None) -> str:
        assert self.db is not None
        recorded = self.secrets.logins(self.db.config.password_secret)
        return dblogins.login_of(self.db.config, recorded, version or "")

    # -- database and jobs ------------------------------------------------------------------------
    def prepare(self, artifacts: dict[str, Artifact], secret_versions: dict[str, str], *,
                infrastructure: bool = True) -> None:
        if self.db is None:
            return
        name = self.db.config.password_secret
        version = secret_versions[name]
        self.db.sync_roles(self._login(version), self.secrets.value(name, version))

    def migration_state(self) -> MigrationState | None:
        return self.db.migration_state() if self.db else None

    def migration_head(self) -> str | None:
        state = self.migration_state()
        return state.head if state else None

    def database_lost(self) -> DataLoss | None:
        gone = self.db.lost() if self.db else None
        if self.db is None or gone is None:
            return None
        if self.db.admin_url:
            return DataLoss(f"the server at deployctl:local.database_url has no database {self.db.config.name}",
                            "Restore it from that server's backups")
        data = _shown(self.paths.pgdata, self.root)
        if gone == "data directory":
            return DataLoss(f"its data directory {data} holds no database",
                            f"Restore the data directory {data} from a copy, with the stack down (deployctl down)")
        return DataLoss(f"the Postgres in {data} has no database {self.db.config.name}",
                        f"Restore the data directory {data} from a copy, with the stack down (deployctl down)")

    def check_database_login(self, secret_versions: dict[str, str]) -> str | None:
        if self.db is None:
            return None
        name = self.db.config.password_secret
        version = secret_versions.get(name, "")
        login = self._login(version)
        try:
            password = self.secrets.value(name, version)
        except KeyError:
            raise DeployctlError(f"{name} v{version or '?'} is not enabled: login {login} cannot log in with it",
                                 "Pin enabled versions: roll back with --repin, or release again.") from None
        refused = self.db.refusal(login, password)
        if refused:
            raise DeployctlError(f"the database refused login {login} with {name} v{version}: {refused}",
                                 "Traffic was not moved. Rotate the password again, or release again.")
        return f"database login {login} accepts {name} v{version}"

    def run_job(
        self, name: str, job: Job, artifact: Artifact, secret_versions: dict[str, str], release_id: str
    ) -> JobRun:
        service = self.stack.job_service(job)
        execution = f"{name}-{release_id}"
        env = self._env(service, artifact.ref, secret_versions)
        env.update(CLOUD_RUN_JOB=name, CLOUD_RUN_EXECUTION=execution)
        message, log = "", self.paths.logs / "jobs" / f"{execution}.log"
        cwd = self._cwd(service, artifact.ref, job, name)
        for attempt in range(1, job.retries + 2):
            env["CLOUD_RUN_TASK_ATTEMPT"] = str(attempt - 1)
            log = self.paths.logs / "jobs" / f"{execution}-{attempt}.log"
            record = self.paths.root / "executions" / f"{execution}.json"
            values = self.secrets.all_values()
            ok, message = procs.run_job(job.command, cwd, env, log, job.timeout_s, record, values)
            _redact_file(log, values)
            if ok:
                return JobRun(name, execution, JobState.SUCCEEDED, attempt, message, str(log))
        safe = redact(message, self.secrets.all_values())
        return JobRun(name, execution, JobState.FAILED, job.retries + 1, safe, str(log))

    # -- revisions and traffic --------------------------------------------------------------------
    def deploy(self, service: str, artifact: Artifact, secret_versions: dict[str, str], release_id: str) -> Revision:
        name = self.revisions.next_name(service)
        rev = procs.RevisionState(name, service, artifact.ref, 0, secret_versions, time.time())
        return self._start(rev)

    def _start(self, rev: procs.RevisionState) -> Revision:
        svc = self.stack.services[rev.service]
        host = self.stack.local.host
        rev.port = procs.free_port(host)
        env = self._env(rev.service, rev.artifact, rev.secret_versions)
        env.update(PORT=str(rev.port), HOST=host, K_REVISION=rev.name)
        log = self.paths.logs / f"{rev.name}.log"
        probe = svc.probes.startup
        try:
            with interrupts.held():  # recorded before a signal can unwind past it (raised here, once it is)
                proc = procs.spawn(svc.command, self._cwd(rev.service, rev.artifact), env, log)
                rev.pid, rev.pid_started, rev.state, rev.log = proc.pid, proc.create_time(), "starting", str(log)
                self.revisions.save(rev)
            budget = probe.period_s * probe.failure_threshold
            procs.wait_ready(f"http://{host}:{rev.port}{probe.path}", proc, budget, log)
        except (DeployctlError, KeyboardInterrupt):
            # a revision that never got ready is stopped here: the stage's undo knows only the candidates
            # that deploy returned; a signal (KeyboardInterrupt) goes on once it is stopped
            if rev.pid is not None:
                with interrupts.held():
                    procs.stop(rev.pid, rev.pid_started)
                    rev.state = "failed"
                    self.revisions.save(rev)
            raise
        rev.state = "ready"
        self.revisions.save(rev)
        return Revision(rev.service, rev.name, f"http://{host}:{rev.port}", rev.artifact, rev.secret_versions)

    def _env(self, service: str, artifact_ref: str, versions: dict[str, str]) -> dict[str, str]:
        svc = self.stack.services[service]
        manifest = builder.manifest_of(self.paths.artifacts, artifact_ref)
        venv = Path(manifest["venv"])
        env = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR") if k in os.environ}
        path = [str(venv / "bin"), os.environ.get("PATH", "/usr/bin:/bin")]
        if manifest.get("site"):  # the app's own project, installed into the artifact (build.py)
            site = self._artifact_dir(artifact_ref) / manifest["site"]
            path.insert(0, str(site / "bin"))
            env["PYTHONPATH"] = str(site)
        env.update(PATH=os.pathsep.join(path), VIRTUAL_ENV=str(venv))
        env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", K_SERVICE=service, K_CONFIGURATION=service)
        env.update(self._plain_env(service, versions))
        for var, secret in svc.secrets.items():
            try:
                env[var] = self.secrets.value(secret, versions[secret])
            except KeyError:
                raise DeployctlError(
                    f"{service} is pinned to {secret} v{versions.get(secret)}, which is not enabled",
                    "Roll back to a release pinned to enabled versions, or run `deployctl up` for a new one.",
                ) from None
        return env

    def _plain_env(self, service: str, versions: dict[str, str]) -> dict[str, str]:
        """The service's env with the database facts filled in; ``{db_user}`` is the login that the pinned
        password version belongs to, so it always matches the password the process gets."""
        env = self.stack.services[service].runtime_env
        facts: dict[str, str] = {}
        if self.db is not None and uses_db_facts(env):
            facts = self.db.facts()
            facts["db_user"] = self._login(versions.get(self.db.config.password_secret))
        return render_env(env, facts)

    def _cwd(self, service: str, ref: str, job: Job | None = None, kind: str = "") -> Path:
        """Where a command runs: ``workdir`` under the service's source in the artifact, else its root."""
        svc = self.stack.services[service]
        workdir = job.workdir if job is not None and job.workdir is not None else svc.workdir
        if workdir is None:
            return self._artifact_dir(ref)
        cwd = self._artifact_dir(ref) / svc.source / workdir
        if not cwd.is_dir():
            own = job is not None and job.workdir is not None
            key = f"jobs.{kind}.workdir" if own else f"services.{service}.workdir"
            raise PreconditionError(f"{self.stack.file}: deployctl:{key}: {svc.source}/{workdir} is not a directory "
                                    f"of {service}'s source", "Write a directory under the source, relative to it.")
        return cwd

    def _artifact_dir(self, ref: str) -> Path:
        return self.paths.artifacts / ref

    def traffic(self, service: str) -> list[Split]:
        try:
            data = json.loads((self.paths.traffic / f"{service}.json").read_text())
        except FileNotFoundError:
            return []
        return [Split(s["revision"], s["percent"]) for s in data["splits"]]

    def set_traffic(self, service: str, splits: list[Split]) -> None:
        entries = []
        for split in splits:
            rev = self.revisions.get(split.revision)
            if rev is None:
                raise DeployctlError(f"revision {split.revision} does not exist")
            entries.append({"revision": rev.name, "percent": split.percent, "port": rev.port})
        self._ensure_router(service)
        atomic_write(self.paths.traffic / f"{service}.json", json.dumps({"splits": entries}))

    def smoke_auth(self, service: str) -> dict[str, str]:
        return {}  # the router and revisions on loopback answer anyone on this machine

    def service_url(self, service: str) -> str:
        return f"http://{self.stack.local.host}:{self._router_port(service)}"

    def _router_port(self, service: str) -> int:
        return self.stack.local.port + list(self.stack.services).index(service)

    def _router_state(self, service: str) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads((self.paths.root / "routers" / f"{service}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state

    def router_healthy(self, service: str) -> bool:
        state = self._router_state(service)
        port = self._router_port(service)
        return bool(state and state["port"] == port and procs.alive(state["pid"], state["pid_started"])
                    and not _port_free(self.stack.local.host, port))

    def restart_router(self, service: str) -> None:
        self._ensure_router(service)

    def database_healthy(self) -> bool | None:
        return None if self.db is None else self.db.running()

    def _ensure_router(self, service: str) -> None:
        """Start the service's router unless the recorded one runs and its port answers (a router that hangs
        is replaced like a dead one)."""
        state_file = self.paths.root / "routers" / f"{service}.json"
        port, host = self._router_port(service), self.stack.local.host
        state = self._router_state(service)
        if state is not None:
            if self.router_healthy(service):
                return
            procs.stop(state["pid"], state["pid_started"])
        if not _port_free(host, port):
            raise PreconditionError(
                f"port {port} on {host} is in use by another program",
                f"Stop it, or set deployctl:local.port in {self.stack.file}.",
            )
        traffic_file = self.paths.traffic / f"{service}.json"
        cmd = [sys.executable, "-m", "deployctl.targets.local.router", str(traffic_file), host, str(port)]
        with interrupts.held():  # a router nobody recorded would hold the port for good
            proc = procs.spawn(cmd, self.root, dict(os.environ), self.paths.logs / f"router-{service}.log")
            atomic_write(state_file, json.dumps({"pid": proc.pid, "pid_started": proc.create_time(), "port": port}))
        deadline = time.monotonic() + 10
        while _port_free(host, port):
            if time.monotonic() > deadline or not procs.alive(proc.pid, proc.create_time()):
                log = self.paths.logs / f"router-{service}.log"
                raise DeployctlError(f"the router for {service} did not start", f"See {log}")
            time.sleep(0.01)

    def revision_healthy(self, service: str, revision: str) -> bool:
        rev = self.revisions.get(revision)
        if rev is None or rev.state != "ready" or not procs.alive(rev.pid, rev.pid_started):
            return False
        return _answers(f"http://{self.stack.local.host}:{rev.port}{self.stack.services[service].probes.startup.path}")

    def revision_secret_versions(self, service: str, revision: str) -> dict[str, str] | None:
        rev = self.revisions.get(revision)
        return dict(rev.secret_versions) if rev is not None and rev.service == service else None

    def ensure_revision(self, service: str, revision: str) -> Revision:
        rev = self.revisions.get(revision)
        if rev is None:
            raise DeployctlError(f"revision {revision} is not on this machine any more")
        if not self.revision_healthy(service, revision):
            procs.stop(rev.pid, rev.pid_started)
            return self._start(rev)
        host = self.stack.local.host
        return Revision(service, rev.name, f"http://{host}:{rev.port}", rev.artifact, rev.secret_versions)

    def discard(self, service: str, revision: str) -> None:
        rev = self.revisions.get(revision)
        if rev is not None:
            procs.stop(rev.pid, rev.pid_started)
            rev.state = "failed"
            self.revisions.save(rev)

    def retire(self, service: str, keep: list[str]) -> None:
        serving = {s.revision for s in self.traffic(service)}
        for rev in self.revisions.all(service):
            if rev.name not in keep and rev.name not in serving and rev.state in ("ready", "starting"):
                procs.stop(rev.pid, rev.pid_started)
                rev.state = "stopped"
                self.revisions.save(rev)

    # -- status and teardown ----------------------------------------------------------------------
    def describe(self) -> dict[str, str]:
        facts = {"state": _shown(self.paths.root, self.root)}
        if self.db:
            data = "" if self.db.admin_url else f", data in {_shown(self.paths.pgdata, self.root)}"
            facts["database"] = self.db.shown() + data
        for service in self.stack.services:
            facts[f"url {service}"] = self.service_url(service)
        return facts

    def down(self, purge: bool, confirm: Callable[[], None]) -> list[str]:
        if purge:
            confirm()
        done = []
        for service in self.stack.services:
            state_file = self.paths.root / "routers" / f"{service}.json"
            if state_file.is_file():
                state = json.loads(state_file.read_text())
                procs.stop(state["pid"], state["pid_started"])
                state_file.unlink()
                done.append(f"stopped the router of {service}")
            for rev in self.revisions.all(service):
                if procs.alive(rev.pid, rev.pid_started):
                    procs.stop(rev.pid, rev.pid_started)
                    done.append(f"stopped {rev.name}")
                rev.state = "stopped" if rev.state == "ready" else rev.state
                self.revisions.save(rev)
            (self.paths.traffic / f"{service}.json").unlink(missing_ok=True)
        if self.db and not self.db.admin_url and self.db.running():  # never stop a server it did not start
            self.db.stop()
            done.append("stopped Postgres")
        if purge:
            shutil.rmtree(self.paths.root, ignore_errors=True)
            done.append(f"deleted {_shown(self.paths.root, self.root)} (database, secrets, ledger)")
        return done


def _redact_file(path: Path, values: list[str]) -> None:
    """Job output is kept as a log; a job that printed a secret must not leave it there."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return
    clean = redact(text, values)
    if clean != text:
        atomic_write(path, clean)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        return sock.connect_ex((host, port)) != 0


def _answers(url: str) -> bool:
    import httpx

    from deployctl.pipeline.smoke import tls

    try:
        return httpx.get(url, timeout=2.0, verify=tls()).status_code == 200
    except httpx.HTTPError:
        return False


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
