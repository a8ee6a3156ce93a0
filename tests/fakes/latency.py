"""A target whose every operation takes a fixed time, for measuring how the pipeline overlaps per-service work.

Nothing real runs: each operation (a build, the secrets, the infrastructure update, a job's start and its
run, a deploy, a traffic update, a clean-up) sleeps the latency ``Latency`` gives its kind and is recorded
in ``log`` as (kind, seconds); revisions and service URLs are paths on one loopback HTTP server that answers
every smoke request after ``smoke_s``. The ledger and the lock are the real local ones, in a temporary
directory. It records which calls were in flight together (``peak``) so tests can assert overlap without
timing anything. ``step_latency`` is how long a step of a plan takes on this target: the sum of what it
injects for that step.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deployctl import config
from deployctl.config import Job, Stack
from deployctl.errors import DeployctlError
from deployctl.migration_state import MigrationState
from deployctl.pipeline.model import Artifact, JobRun, JobState, Revision, Split
from deployctl.pipeline.plan import Step
from deployctl.pipeline.steps import (
    Build,
    CheckDatabaseLogin,
    Deploy,
    PinSecrets,
    Promote,
    Reactivate,
    Retire,
    RunJob,
    Smoke,
    checks_for,
)
from deployctl.pipeline.target import DataLoss
from deployctl.targets.local.state import FileLock, SqliteLedger
from tests.fakes.serving import serve_in_thread


@dataclass
class Latency:
    """Seconds per operation kind. The first four are the ones every test sets; the rest default to 0."""

    build_s: float = 2.0
    job_s: float = 1.0  # a blocking job's run, from its start to its reported end
    deploy_s: float = 1.0  # a candidate revision, created and ready
    smoke_s: float = 0.2  # one smoke request
    job_start_s: float = 0.0  # a job execution, from the request to its task running (a non-blocking job: all)
    traffic_s: float = 0.0  # one traffic update, until the new split is routed
    secrets_s: float = 0.0  # pinning the secret versions (ensure_secrets)
    infra_s: float = 0.0  # the infrastructure update before the release (prepare)
    retire_s: float = 0.0  # retiring one service's old revisions


def stack_file(services: int | dict[str, list[str]], rollout: list[int] | None = None,
               secrets: tuple[str, ...] = ()) -> str:
    """A local-target stack with a migrate and an init job, no database: *services* services checked at
    /health each, or the services given with their smoke paths; *rollout* its traffic steps; *secrets* the
    names of its generated secrets (none by default)."""
    checks = services if isinstance(services, dict) else {f"svc{i}": ["/health"] for i in range(services)}
    lines = ["config:", "  deployctl:target: local", "  deployctl:services:"]
    for name in checks:
        lines += [f"    {name}:", "      source: app", '      command: ["python", "-m", "app"]']
    lines += [
        "  deployctl:database: null",
        "  deployctl:jobs:",
        '    migrate: {command: ["python", "-m", "app.migrate"]}',
        '    init: {command: ["python", "-m", "app.init"], blocking: false}',
        "  deployctl:smoke:",
    ]
    lines += [f"    - {{path: {path}, service: {name}}}" for name, paths in checks.items() for path in paths]
    if rollout:
        lines += ["  deployctl:rollout:", f"    steps: {rollout}"]
    if secrets:
        lines += ["  deployctl:secrets:", *(f"    {name}: {{source: generated}}" for name in secrets)]
    return "\n".join(lines) + "\n"


def make_stack(root: Path, services: int | dict[str, list[str]], rollout: list[int] | None = None,
               secrets: tuple[str, ...] = ()) -> Stack:
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    (root / "app").mkdir(exist_ok=True)
    (root / "stacks" / "Pulumi.bench.yaml").write_text(stack_file(services, rollout, secrets))
    return config.load("bench", root)


class _Smoke(BaseHTTPRequestHandler):
    delay_s = 0.0
    fail: set[str] = set()  # noqa: RUF012 - set per server
    seen: list[tuple[str, float]] = []  # noqa: RUF012 - set per server: (path, the delay it was answered after)

    def do_GET(self) -> None:
        self.seen.append((self.path, self.delay_s))
        time.sleep(self.delay_s)
        service = self.path.strip("/").split("/")[0]
        self.send_response(500 if service in self.fail else 200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def smoke_server(delay_s: float, fail: set[str], seen: list[tuple[str, float]] | None = None) -> Iterator[str]:
    handler = type("Handler", (_Smoke,), {"delay_s": delay_s, "fail": fail, "seen": [] if seen is None else seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class LatencyTarget:
    stack: Stack
    state: Path
    base_url: str
    latency: Latency = field(default_factory=Latency)
    fail_deploy: set[str] = field(default_factory=set)
    name: str = "latency"
    ordered_by_commit: bool = False
    jobs_outlive_the_cli: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)  # the most calls of a kind that were in flight at once
    discarded: list[str] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)  # revisions whose instances died (revision_healthy is False)
    secret_states: dict[str, dict[str, str]] = field(default_factory=dict)  # secret -> version -> state
    secrets: dict[str, list[str]] = field(default_factory=dict)  # secret -> its versions, oldest first
    log: list[tuple[str, float]] = field(default_factory=list)  # (kind, seconds) of every operation, in order
    sleep: Callable[[float], None] = time.sleep  # how an operation waits its latency (tests record it instead)
    head: str | None = None  # the database's migration head
    migrate_to: str | None = None  # where the migrate job takes it (None: it stays)

    def __post_init__(self) -> None:
        self.ledger = SqliteLedger(self.state / "ledger.db")
        self.lock = FileLock(self.state, self.stack.name)
        self._traffic: dict[str, list[Split]] = {}
        self._revisions: dict[str, str] = {}
        self._pins: dict[str, dict[str, str]] = {}  # revision -> the secret versions it was deployed with
        self._built: set[str] = set()
        self._busy: Counter[str] = Counter()
        self._mutex = threading.Lock()

    def _timed(self, kind: str, seconds: float, then: Callable[[], None] | None = None) -> None:
        with self._mutex:
            self.calls[kind] += 1
            self.log.append((kind, seconds))
            self._busy[kind] += 1
            self.peak[kind] = max(self.peak[kind], self._busy[kind])
        try:
            self.sleep(seconds)
            if then:
                then()
        finally:
            with self._mutex:
                self._busy[kind] -= 1

    # -- read-only --------------------------------------------------------------------------------
    def source_hash(self, service: str) -> str:
        return f"{service}-source"

    def find_artifact(self, service: str, source_hash: str) -> Artifact | None:
        return Artifact(service, source_hash, f"{service}@1", "sha256:1") if source_hash in self._built else None

    def current_secret_versions(self) -> dict[str, str | None]:
        return {name: (self.secrets.get(name) or [None])[-1] for name in self.stack.secrets}

    def secret_version_states(self, name: str) -> dict[str, str]:
        return dict(self.secret_states.get(name, {}))

    def revision_secret_versions(self, service: str, revision: str) -> dict[str, str] | None:
        return dict(self._pins[revision]) if revision in self._pins else None

    def check_database_login(self, secret_versions: dict[str, str]) -> str | None:
        return None

    def traffic(self, service: str) -> list[Split]:
        return list(self._traffic.get(service, []))

    def revision_healthy(self, service: str, revision: str) -> bool:
        return revision in self._revisions and revision not in self.dead

    def router_healthy(self, service: str) -> bool:
        return True

    def database_healthy(self) -> bool | None:
        return None

    def smoke_auth(self, service: str) -> dict[str, str]:
        return {}

    def service_url(self, service: str) -> str:
        return f"{self.base_url}/{service}"

    def migration_state(self) -> MigrationState | None:  # a migrated database has its table and alembic's
        return MigrationState("alembic", self.head, 2) if self.head else None

    def migration_head(self) -> str | None:
        return self.head

    def database_lost(self) -> DataLoss | None:
        return None

    def describe(self) -> dict[str, str]:
        return {}

    # -- mutating ---------------------------------------------------------------------------------
    def build(self, service: str, source_hash: str) -> Artifact:
        self._timed("build", self.latency.build_s)
        self._built.add(source_hash)
        return Artifact(service, source_hash, f"{service}@1", "sha256:1")

    def ensure_secrets(self) -> dict[str, str]:
        """Every declared secret gets a v1 if it has none (they are all generated)."""
        self._timed("secrets", self.latency.secrets_s)
        for name in self.stack.secrets:
            if not self.secrets.setdefault(name, []):
                self.secrets[name].append("1")
        return {name: versions[-1] for name, versions in self.secrets.items() if name in self.stack.secrets}

    def add_secret_version(self, name: str, value: str | None) -> str:
        raise DeployctlError("no secrets here")

    def disable_secret_versions(self, name: str, keep: Iterable[str]) -> list[str]:
        return []

    def prepare(self, artifacts: dict[str, Artifact], secret_versions: dict[str, str], *,
                infrastructure: bool = True) -> None:
        self._timed("infra", self.latency.infra_s)

    def run_job(self, name: str, job: Job, artifact: Artifact, secret_versions: dict[str, str],
                release_id: str) -> JobRun:
        self._timed("job_start", self.latency.job_start_s)
        if not job.blocking:  # started and left to run, as the gcp target leaves it
            return JobRun(name, f"{name}-{release_id}", JobState.RUNNING, 1)
        self._timed("job", self.latency.job_s)
        if name == "migrate" and self.migrate_to:
            self.head = self.migrate_to
        return JobRun(name, f"{name}-{release_id}", JobState.SUCCEEDED, 1)

    def deploy(self, service: str, artifact: Artifact, secret_versions: dict[str, str], release_id: str) -> Revision:
        self._timed("deploy", self.latency.deploy_s)
        if service in self.fail_deploy:
            raise DeployctlError(f"{service}: the startup probe did not pass")
        name = f"{service}-{release_id}"
        self._revisions[name] = service
        self._pins[name] = dict(secret_versions)
        return Revision(service, name, f"{self.base_url}/candidate/{service}", artifact.ref)  # its tag URL

    def set_traffic(self, service: str, splits: list[Split]) -> None:
        self._timed("traffic", self.latency.traffic_s)
        self._traffic[service] = list(splits)

    def restart_router(self, service: str) -> None:
        pass

    def ensure_revision(self, service: str, revision: str) -> Revision:
        return Revision(service, revision, self.service_url(service), "")

    def discard(self, service: str, revision: str) -> None:
        self.discarded.append(revision)

    def retire(self, service: str, keep: list[str]) -> None:
        self._timed("retire", self.latency.retire_s)

    def down(self, purge: bool, confirm: Callable[[], None]) -> list[str]:
        return []


def step_latency(step: Step, target: LatencyTarget) -> float:
    """How long *step* takes on *target*: the latencies it injects for the step, when every check passes at
    its first request. A step this model does not know is an error, never a silent zero."""
    lat = target.latency
    if isinstance(step, Build):
        return 0.0 if step.existing or step.image else lat.build_s
    if isinstance(step, PinSecrets):
        return lat.secrets_s + lat.infra_s
    if isinstance(step, RunJob):
        return lat.job_start_s + (lat.job_s if step.job.blocking else 0.0)
    if isinstance(step, Deploy):
        return lat.deploy_s
    if isinstance(step, Smoke):
        return len(step.paths) * lat.smoke_s
    if isinstance(step, CheckDatabaseLogin):
        return 0.0
    checks = len(checks_for(target, step.service)) if isinstance(step, Promote | Reactivate) else 0
    if isinstance(step, Promote):
        return len(step.percents) * (lat.traffic_s + checks * lat.smoke_s)
    if isinstance(step, Reactivate):
        return lat.traffic_s + checks * lat.smoke_s
    if isinstance(step, Retire):
        return len(target.stack.services) * lat.retire_s
    raise ValueError(f"no latency model for {type(step).__name__}")
