"""The twin's runtime: the fake Cloud Run runs the service's real code, and a real Postgres stands in for Cloud SQL.

Opt-in (``tests/gcp/conftest.py``: the ``runtime`` fixture wires it into a test's fake cloud). Without it the fakes
answer as they always did. With it:

- **Images.** The fake Cloud Build hands over the uploaded context of each image it pushed (``on_image``); the
  runtime extracts it once per digest and lays it out as the Dockerfile's *final stage* would: its ``WORKDIR``
  and the destinations of its ``COPY``/``ADD`` of context files, under a directory that stands in for the
  container's filesystem. Only those instructions (and ``ENV``, ``ENTRYPOINT``, ``CMD``) of the last stage are
  read: ``RUN`` lines are not executed (there is no container engine here), and ``COPY --from=<stage>`` is not
  copied. What they produce in the sample's Dockerfile — a venv with the dependencies — is built the way the
  local target builds one (``deployctl.targets.local.deps``/``build.ensure_venv``, from the dependency spec found
  in the context next to the first directory the final stage copies), with this machine's Python standing in
  for the base image's. ``USER`` and ``EXPOSE`` are ignored; ``ADD`` of a URL or an archive, wildcards in a
  source, and an app that is itself an installable package are not supported. An image digest that no build of
  this test pushed has nothing to run: its revision fails as Cloud Run's does for a missing image.
- **Revisions** (the fake Cloud Run's ``runtime`` hook). Creating a revision starts one instance (Cloud Run
  "Container runtime contract": the container's ``command`` replaces the image's ENTRYPOINT, its ``args`` the
  CMD; ``PORT`` is the port requests are sent to, here a free loopback port; ``K_SERVICE``, ``K_REVISION`` and
  ``K_CONFIGURATION`` are set), in the image's WORKDIR, with the image's ENV, the container's env, and each
  secret env var resolved through the real Secret Manager client at its pinned version (Cloud Run "Configure
  secrets": "If the secret is an environment variable, the value of the secret is retrieved prior to starting
  the instance, so if secret retrieval fails, the instance does not start"). The revision is Ready only when
  its startup probe passes: the HTTP path of the template's ``startup_probe`` within period times failure
  threshold, else Cloud Run's default TCP probe on the port ("Configure container health checks"). A failed
  start leaves it Ready=False with the line of its log that says why. Requests to the revision are proxied
  to the instance. Instances stop at the end of the test.
- **Job executions** (drongo_ext's ``JOBS.runtime`` hook) run the job's container as a real process with the
  same env rules, plus ``CLOUD_RUN_JOB``, ``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX``,
  ``CLOUD_RUN_TASK_ATTEMPT`` and ``CLOUD_RUN_TASK_COUNT`` (container contract, jobs). Exit code 0 is success;
  a failed task is retried up to the task's ``max_retries`` ("Set maximum retries for jobs"), each attempt a
  fresh process, and stopped at the task's ``timeout``. Each attempt's output is kept as the execution's log, which
  the fake Cloud Logging (tests/fakes/cloudlogging.py) serves as the execution's entries.
- **Cloud SQL.** A real Postgres — the local target's embedded one (``deployctl.targets.local.postgres``) —
  stands in for each instance. The users the fake Cloud SQL Admin makes and their passwords
  (``create_user``/``users.update``) are applied to it as roles with passwords. Cloud SQL ("About PostgreSQL
  users"): users made through Cloud SQL are members of ``cloudsqlsuperuser`` and have CREATEROLE, CREATEDB and
  LOGIN; the group may create the supported extensions that need a superuser. A plain Postgres lets only a
  superuser create an untrusted extension (pgvector's control file is not ``trusted``), so the stand-in creates
  the extensions the stack lists (``database.extensions``) as its superuser when it makes the database, which
  a ``CREATE EXTENSION IF NOT EXISTS`` of a member then finds; an extension a migration creates that the stack
  does not list fails here where Cloud SQL would allow it. The stack's database (the program's
  ``gcp:sql/database:Database``, which the fake engine does not apply) is made owned by ``cloudsqlsuperuser``,
  so its members may create objects in it.
- **The socket.** Cloud Run mounts ``/cloudsql/<connection name>/`` with the instance's socket
  ``.s.PGSQL.5432`` in it, for each instance of a Cloud SQL volume (Cloud SQL, "Connect from Cloud Run").
  A process here cannot get that mount, so the runtime makes a short directory (a unix socket path is limited
  to 107 bytes) that holds ``<connection name>/.s.PGSQL.5432`` linked to the stand-in's socket, and rewrites
  the ``<mount path>/<connection name>`` prefix in the env values of a container that mounts the volume.
  An app that hard-codes ``/cloudsql`` in its code, instead of reading it from its env, is the one case this
  cannot serve.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from google.cloud import run_v2

from deployctl.config import Database
from deployctl.errors import DeployctlError
from deployctl.joblog import explain
from deployctl.targets.local import build as local_build
from deployctl.targets.local import deps
from deployctl.targets.local import processes as procs
from deployctl.targets.local.postgres import LocalDatabase

# what the process may keep of this machine's environment (as the local target's revisions do)
_KEPT = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the Debian images' default PATH
SOCKET = ".s.PGSQL.5432"  # Cloud SQL: the Postgres socket in /cloudsql/<connection name>/


def _said(exc: Any) -> str:
    """What the API said, without the REST client's ``GET <url>:`` prefix."""
    try:
        return str(exc.response.json()["error"]["message"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return str(exc.message)


# -- images -----------------------------------------------------------------------------------------


@dataclass
class Image:
    digest: str
    fs: Path  # stands in for the container's filesystem
    workdir: str  # absolute, inside the container
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    venv: Path  # stands in for what the RUN lines made (the dependencies)

    def path(self, inside: str) -> Path:
        return self.fs / inside.lstrip("/")


def final_stage(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage: continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    stage: list[tuple[str, str]] = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage = []
        else:
            stage.append((word.upper(), rest.strip()))
    return stage


def _argv(text: str) -> list[str]:
    """ENTRYPOINT/CMD: the exec form (a JSON array) as it is, the shell form through ``/bin/sh -c``."""
    if text.startswith("["):
        return [str(a) for a in json.loads(text)]
    return ["/bin/sh", "-c", text]


def _expand(value: str, env: dict[str, str]) -> str:
    for name, current in sorted(env.items(), key=lambda kv: -len(kv[0])):
        value = value.replace("${" + name + "}", current).replace("$" + name, current)
    return value


def layout(context: Path, fs: Path, dockerfile: str) -> tuple[str, list[str], list[str], dict[str, str], list[str]]:
    """Lay the context out in *fs* as the final stage's WORKDIR and COPY/ADD do; return the stage's WORKDIR,
    ENTRYPOINT, CMD, ENV and the context sources it copied."""
    workdir, entrypoint, cmd = "/", [], []
    env = {"PATH": _BASE_PATH}
    sources: list[str] = []
    for instruction, rest in final_stage(dockerfile):
        if instruction == "WORKDIR":
            workdir = os.path.normpath(os.path.join(workdir, _expand(rest, env)))
            (fs / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif instruction == "ENV":
            words = shlex.split(rest)
            pairs = [w.split("=", 1) for w in words] if "=" in words[0] else [[words[0], " ".join(words[1:])]]
            for name, value in pairs:
                env[name] = _expand(value, env)
        elif instruction == "ENTRYPOINT":
            entrypoint = _argv(rest)
        elif instruction == "CMD":
            cmd = _argv(rest)
        elif instruction in ("COPY", "ADD"):
            sources += _copy(context, fs, workdir, rest)
    return workdir, entrypoint, cmd, env, sources


def _copy(context: Path, fs: Path, workdir: str, rest: str) -> list[str]:
    """One COPY/ADD of context files into *fs*; the sources it copied (none for ``--from``)."""
    args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    if any(a.startswith("--from") for a in args):
        return []  # another stage's output: what its RUN lines made (see the module docstring)
    *srcs, dest = [a for a in args if not a.startswith("--")]
    target = fs / os.path.normpath(os.path.join(workdir, dest)).lstrip("/")
    for src in srcs:
        origin = context / os.path.normpath(src)
        if origin.is_dir():  # Docker copies a directory's contents, not the directory itself
            shutil.copytree(origin, target, dirs_exist_ok=True)
        else:
            into = target / origin.name if dest.endswith("/") or len(srcs) > 1 else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, into)
    return [os.path.normpath(src) for src in srcs]


# -- instances and executions -----------------------------------------------------------------------


@dataclass
class Instance:
    revision: str
    port: int
    process: psutil.Process
    log: Path


@dataclass
class Execution:
    name: str
    state: str = "running"  # running, succeeded, failed
    attempts: int = 0
    message: str = ""
    logs: list[Path] = field(default_factory=list)
    record: Path | None = None
    completed: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))  # its output's entries are stamped from it

    @property
    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.is_file())


class Refused(Exception):  # noqa: N818 - reads as the outcome it reports
    """Why an instance or a task cannot start (the revision's or execution's message)."""


# -- Cloud SQL ----------------------------------------------------------------------------------------


class CloudSqlStandIn:
    """A real Postgres for one Cloud SQL instance, with the database the stack names."""

    def __init__(self, pgdata: Path, connection: str, database: str, extensions: list[str]) -> None:
        self.connection = connection
        self.database = database
        self.db = LocalDatabase(pgdata, Database(name=database, user="postgres", password_secret="-",
                                                 extensions=extensions))
        self.db.start()
        self.socket = Path(self.db.facts()["db_socket"]) / f".s.PGSQL.{self.db.facts()['db_port']}"
        from psycopg import sql

        with self.db.admin() as admin:
            admin.execute("CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEROLE CREATEDB")
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER cloudsqlsuperuser").format(sql.Identifier(database)))
        with self.db.admin(database) as admin:
            for extension in extensions:
                admin.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))

    def apply_user(self, user: str, password: str) -> None:
        """A Cloud SQL user as Cloud SQL makes it: LOGIN, CREATEROLE, CREATEDB, in cloudsqlsuperuser."""
        from psycopg import sql

        with self.db.admin() as admin:
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            admin.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)))
            if not exists:
                admin.execute(sql.SQL("GRANT cloudsqlsuperuser TO {}").format(sql.Identifier(user)))

    def run_as_postgres(self, statements: list[str]) -> None:
        """Statements an operator runs as the instance's ``postgres`` user (a runbook step)."""
        with self.db.admin(self.database) as admin:
            for statement in statements:
                admin.execute(statement)  # type: ignore[arg-type]

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with self.db.admin(self.database) as admin:
            return list(admin.execute(statement).fetchall())  # type: ignore[arg-type]

    def stop(self) -> None:
        self.db.stop()


# -- the runtime --------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, workdir: Path, venvs: Path, dockerfile: str = "Dockerfile.cloudrun",
                 deadline_s: float | None = None) -> None:
        self.workdir = workdir
        self.venvs = venvs
        self.dockerfile = dockerfile
        self.deadline_s = deadline_s  # caps a startup probe's budget (None: the probe's own)
        self.as_service_accounts = False  # a twin project: read secrets as the workload's service account
        self.contexts: dict[str, bytes] = {}  # digest -> the uploaded build context
        self.images: dict[str, Future[Image]] = {}
        self.instances: dict[str, Instance] = {}  # revision -> its instance
        self.refused: dict[str, str] = {}  # revision -> why its instance did not start
        self.executions: dict[str, Execution] = {}
        self.sql: dict[str, CloudSqlStandIn] = {}  # connection name -> stand-in
        self.instance_names: dict[str, str] = {}  # Cloud SQL instance id -> connection name
        self.mount = Path(tempfile.mkdtemp(prefix="csql"))  # short: sockets live under it
        self._pool = ThreadPoolExecutor(max_workers=4)
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []

    # -- wiring ---------------------------------------------------------------------------------------
    def cloud_sql(self, instance: str, connection: str, database: str, extensions: list[str]) -> CloudSqlStandIn:
        """Stand a Postgres in for the Cloud SQL instance *instance* (connection name *connection*)."""
        stand_in = CloudSqlStandIn(self.workdir / f"pg-{instance}", connection, database, extensions)
        (self.mount / connection).mkdir(parents=True, exist_ok=True)
        (self.mount / connection / SOCKET).symlink_to(stand_in.socket)
        self.sql[connection] = stand_in
        self.instance_names[instance] = connection
        return stand_in

    def user_applied(self, instance: str, user: str, password: str) -> None:
        """The fake Cloud SQL Admin made a user or set its password (sqladmin's ``applied`` hook)."""
        connection = self.instance_names.get(instance)
        if connection is not None:
            self.sql[connection].apply_user(user, password)

    def image_built(self, digest: str, context: bytes) -> None:
        """The fake Cloud Build pushed *digest* built from *context* (builds' ``on_image`` hook); the image is
        laid out and its venv made in the background, so the build's own call returns at once."""
        with self._lock:
            if digest not in self.images:
                self.contexts[digest] = context
                self.images[digest] = self._pool.submit(self._prepare, digest, context)

    def _prepare(self, digest: str, context: bytes) -> Image:
        base = self.workdir / "images" / digest.removeprefix("sha256:")[:16]
        ctx, fs = base / "context", base / "fs"
        with tarfile.open(fileobj=io.BytesIO(context), mode="r:gz") as tar:
            tar.extractall(ctx, filter="data")
        dockerfile = (ctx / self.dockerfile).read_text()
        workdir, entrypoint, cmd, env, sources = layout(ctx, fs, dockerfile)
        first_dir = next((s for s in sources if (ctx / s).is_dir()), ".")
        venv = local_build.ensure_venv(deps.find(ctx, first_dir), self.venvs)
        return Image(digest, fs, workdir, entrypoint, cmd, env, venv)

    def _image(self, ref: str) -> Image:
        digest = ref.rpartition("@")[2]
        with self._lock:
            future = self.images.get(digest)
        if future is None:
            # Cloud Run, when a revision's image does not exist: "Image '<ref>' not found."
            raise Refused(f"Image '{ref}' not found.")
        try:
            return future.result()
        except DeployctlError as exc:
            raise Refused(f"the image {ref} cannot run here: {exc.message}") from None
        except Exception as exc:  # the twin could not lay it out: say so in the revision, not as a crash
            raise Refused(f"the twin could not lay out {ref}: {type(exc).__name__}: {exc}") from None

    # -- environment ---------------------------------------------------------------------------------
    def _environment(self, image: Image, container: Any, volumes: list[Any], project: str,
                     service_account: str = "") -> dict[str, str]:
        env = {k: os.environ[k] for k in _KEPT if k in os.environ}
        env.update(image.env)
        inside = [image.path(p) for p in image.env.get("PATH", "").split(":") if p and image.path(p).is_dir()]
        env["PATH"] = os.pathsep.join([str(image.venv / "bin"), *map(str, inside), os.environ.get("PATH", "")])
        from google.api_core import exceptions as gexc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager_v1

        # Cloud Run resolves secret env vars as the revision's (or task's) service account ("Configure
        # secrets": the service identity needs secretmanager.versions.access); in a twin project the workload's
        # identity is checked, in the pre-seeded one an anonymous call is the owner's
        credentials: Any = AnonymousCredentials()
        if self.as_service_accounts and service_account:
            from tests.fakes.iam import TwinCredentials

            credentials = TwinCredentials(f"serviceAccount:{service_account.rsplit('/', 1)[-1]}")
        client = secretmanager_v1.SecretManagerServiceClient(credentials=credentials)
        for var in container.env:
            ref = var.value_source.secret_key_ref if var.value_source else None
            if ref and ref.secret:
                full = ref.secret.startswith("projects/")
                secret = ref.secret if full else f"projects/{project}/secrets/{ref.secret}"
                name = f"{secret}/versions/{ref.version or 'latest'}"
                try:
                    env[var.name] = client.access_secret_version(name=name).payload.data.decode()
                except gexc.GoogleAPICallError as exc:  # the instance does not start (Cloud Run, "Configure secrets")
                    raise Refused(f"{var.name}: secret {ref.secret} version {ref.version}: {_said(exc)}") from None
            else:
                env[var.name] = var.value
        mounts = {m.name: m.mount_path for m in container.volume_mounts}
        for volume in volumes:
            if volume.name not in mounts or not volume.cloud_sql_instance.instances:
                continue
            for connection in volume.cloud_sql_instance.instances:
                if connection not in self.sql:
                    continue  # no stand-in: the socket does not exist, and connecting fails
                here = f"{mounts[volume.name].rstrip('/')}/{connection}"
                env = {k: v.replace(here, str(self.mount / connection)) for k, v in env.items()}
        return env

    # -- revisions -----------------------------------------------------------------------------------
    def start_revision(self, revision: str, template: run_v2.RevisionTemplate) -> str | None:
        """Start *revision*'s instance; None when it is Ready, else the revision's message."""
        try:
            self._start(revision, template)
        except Refused as exc:
            self.refused[revision] = str(exc)
            return str(exc)
        return None

    def _start(self, revision: str, template: run_v2.RevisionTemplate) -> None:
        container = template.containers[0]
        image = self._image(container.image)
        service = revision.split("/revisions/")[0]
        project = revision.split("/")[1]
        env = self._environment(image, container, list(template.volumes), project, template.service_account)
        port = procs.free_port()
        short, service_id = revision.rsplit("/", 1)[-1], service.rsplit("/", 1)[-1]
        env.update(PORT=str(port), K_SERVICE=service_id, K_REVISION=short, K_CONFIGURATION=service_id)
        argv = [*(container.command or image.entrypoint), *(container.args or ([] if container.command else image.cmd))]
        log = self.workdir / "logs" / f"{short}.log"
        try:
            process = procs.spawn(argv, image.path(image.workdir), env, log)
        except OSError as exc:
            raise Refused(f"The user-provided container failed to start: {argv[0]}: {exc.strerror}") from None
        instance = Instance(revision, port, process, log)
        with self._lock:
            self.instances[revision] = instance
        probe = container.startup_probe
        if probe and probe.http_get and probe.http_get.path:
            budget = float(probe.initial_delay_seconds + probe.period_seconds * probe.failure_threshold)
            budget = min(budget, self.deadline_s) if self.deadline_s else budget
            try:
                procs.wait_ready(f"http://127.0.0.1:{port}{probe.http_get.path}", process, budget, log)
            except DeployctlError as exc:
                exited = "exited" in exc.message
                self._stop(instance)
                said = explain(log.read_text(errors="replace"))
                what = "exited before its startup probe passed" if exited else "failed the configured startup probe"
                raise Refused(f"The user-provided container {what}: {said}") from None
            return
        # no HTTP startup probe: Cloud Run's default TCP probe on the port
        deadline = time.monotonic() + (self.deadline_s or 240)
        while time.monotonic() < deadline:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                break
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.1)
        self._stop(instance)
        raise Refused("The user-provided container failed to start and listen on the port defined provided by the "
                      f"PORT={port} environment variable: {explain(log.read_text(errors='replace'))}")

    def answer(self, revision: str, path: str) -> tuple[int, str]:
        """A request to *revision*: proxied to its instance."""
        import httpx

        with self._lock:
            instance = self.instances.get(revision)
        if instance is None:
            return 503, "no instance of this revision is running"
        try:
            response = httpx.get(f"http://127.0.0.1:{instance.port}{path}", timeout=30)
        except httpx.HTTPError as exc:
            return 503, f"the instance did not answer ({type(exc).__name__})"
        return response.status_code, response.text

    def log(self, revision: str) -> str:
        """The instance's output (its Cloud Logging entries)."""
        instance = self.instances.get(revision) or next(
            (i for name, i in self.instances.items() if name.endswith(f"/revisions/{revision}")), None)
        return instance.log.read_text(errors="replace") if instance else ""

    # -- job executions ------------------------------------------------------------------------------
    def start_execution(self, job: dict[str, Any], execution: str, overrides: dict[str, str]) -> None:
        """Run one execution of *job* (its resource as the fake holds it) in the background."""
        run = Execution(execution)
        with self._lock:
            self.executions[execution] = run
        thread = threading.Thread(target=self._execute, args=(job, run, overrides), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _execute(self, job: dict[str, Any], run: Execution, overrides: dict[str, str]) -> None:
        short = run.name.rsplit("/", 1)[-1]
        try:
            parsed = run_v2.Job.from_json(json.dumps(job), ignore_unknown_fields=True)
            task = parsed.template.template
            container = task.containers[0]
            image = self._image(container.image)
            env = self._environment(image, container, list(task.volumes), run.name.split("/")[1],
                                    task.service_account)
        except Refused as exc:
            return self._finish(run, "failed", f"Task {short}-task0 failed to start: {exc}")
        except Exception as exc:  # the twin itself failed: say so rather than leave the execution running
            return self._finish(run, "failed", f"the twin could not run {short}: {type(exc).__name__}: {exc}")
        env.update(overrides)
        env.update(CLOUD_RUN_JOB=job["name"].rsplit("/", 1)[-1], CLOUD_RUN_EXECUTION=short,
                   CLOUD_RUN_TASK_INDEX="0", CLOUD_RUN_TASK_COUNT="1")
        argv = [*(container.command or image.entrypoint), *(container.args or ([] if container.command else image.cmd))]
        timeout = task.timeout.total_seconds() if task.timeout else 600.0
        for attempt in range(task.max_retries + 1):
            env["CLOUD_RUN_TASK_ATTEMPT"] = str(attempt)
            log = self.workdir / "logs" / f"{short}-{attempt}.log"
            run.logs.append(log)
            run.attempts, run.record = attempt + 1, self.workdir / "executions" / f"{short}.json"
            ok, _ = procs.run_job(argv, image.path(image.workdir), env, log, timeout, run.record)
            if ok:
                return self._finish(run, "succeeded", "")
        # the execution's Completed condition, as gcloud shows it ("Task <execution>-task0 failed with
        # message: The container exited with an error."); the output is in the execution's log
        self._finish(run, "failed", f"Task {short}-task0 failed with message: The container exited with an error.")

    def _finish(self, run: Execution, state: str, message: str) -> None:
        run.message = message
        run.completed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        run.state = state

    def execution_status(self, execution: str) -> dict[str, Any] | None:
        """The execution's fields as Cloud Run reports them (drongo_ext overlays them on its resource)."""
        run = self.executions.get(execution)
        if run is None:
            return None
        retried = 1 if run.attempts > 1 else 0  # Execution.retried_count: tasks that retried at least once
        if run.state == "running":
            return {"runningCount": 1, "succeededCount": 0, "failedCount": 0, "retriedCount": retried,
                    "conditions": [{"type": "Completed", "state": "CONDITION_RECONCILING"}]}
        ok = run.state == "succeeded"
        condition: dict[str, Any] = {"type": "Completed", "state": "CONDITION_SUCCEEDED" if ok else "CONDITION_FAILED"}
        if not ok:
            condition.update(message=run.message, executionReason="NON_ZERO_EXIT_CODE")
        return {"runningCount": 0, "succeededCount": int(ok), "failedCount": int(not ok), "retriedCount": retried,
                "completionTime": run.completed, "conditions": [condition]}

    def execution(self, job_id: str) -> list[Execution]:
        """The executions of job *job_id*, oldest first."""
        return [e for name, e in sorted(self.executions.items()) if f"/jobs/{job_id}/" in name]

    # -- teardown ------------------------------------------------------------------------------------
    def _stop(self, instance: Instance) -> None:
        procs.stop(instance.process.pid, instance.process.create_time(), grace_s=3)

    def stop(self) -> None:
        """Stop every instance and running task, then the Postgres stand-ins: no process outlives the test."""
        with self._lock:
            instances = list(self.instances.values())
        for instance in instances:
            with contextlib.suppress(psutil.Error):
                self._stop(instance)
        for run in list(self.executions.values()):
            if run.state == "running" and run.record is not None and run.record.is_file():
                data = json.loads(run.record.read_text())
                procs.stop(data.get("pid"), data.get("pid_started"), grace_s=1)
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for stand_in in self.sql.values():
            stand_in.stop()
        shutil.rmtree(self.mount, ignore_errors=True)
