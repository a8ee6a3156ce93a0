"""A target whose every step takes a fixed time, for measuring how the pipeline overlaps per-service work.

Nothing real runs: builds, jobs and deploys sleep their latency and record it; revisions and service
URLs are paths on one loopback HTTP server that answers every smoke request after ``smoke_s``. The
ledger and the lock are the real local ones, in a temporary directory. It records which calls were in
flight together (``peak``) so tests can assert overlap without timing anything.
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
from deployctl.pipeline.ledger import SqliteLedger
from deployctl.pipeline.lock import FileLock
from deployctl.pipeline.model import Artifact, JobRun, JobState, Revision, Split


@dataclass
class Latency:
    build_s: float = 2.0
    job_s: float = 1.0
    deploy_s: float = 1.0
    smoke_s: float = 0.2


def stack_file(services: int) -> str:
    """A local-target stack of *services* services with a migrate and an init job, no database, no secrets."""
    lines = ["config:", "  deployctl:target: local", "  deployctl:services:"]
    for i in range(services):
        lines += [f"    svc{i}:", "      source: app", '      command: ["python", "-m", "app"]']
    lines += [
        "  deployctl:database: null",
        "  deployctl:jobs:",
        '    migrate: {command: ["python", "-m", "app.migrate"]}',
        '    init: {command: ["python", "-m", "app.init"], blocking: false}',
        "  deployctl:smoke:",
    ]
    lines += [f"    - {{path: /health, service: svc{i}}}" for i in range(services)]
    return "\n".join(lines) + "\n"


def make_stack(root: Path, services: int) -> Stack:
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    (root / "app").mkdir(exist_ok=True)
    (root / "stacks" / "Pulumi.bench.yaml").write_text(stack_file(services))
    return config.load("bench", root)


class _Smoke(BaseHTTPRequestHandler):
    delay_s = 0.0
    fail: set[str] = set()  # noqa: RUF012 - set per server

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        service = self.path.strip("/").split("/")[0]
        self.send_response(500 if service in self.fail else 200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def smoke_server(delay_s: float, fail: set[str]) -> Iterator[str]:
    handler = type("Handler", (_Smoke,), {"delay_s": delay_s, "fail": fail})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
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
    calls: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)  # the most calls of a kind that were in flight at once
    discarded: list[str] = field(default_factory=list)
    secret_states: dict[str, dict[str, str]] = field(default_factory=dict)  # secret -> version -> state

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
            self._busy[kind] += 1
            self.peak[kind] = max(self.peak[kind], self._busy[kind])
        try:
            time.sleep(seconds)
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
        return {}

    def secret_version_states(self, name: str) -> dict[str, str]:
        return dict(self.secret_states.get(name, {}))

    def revision_secret_versions(self, service: str, revision: str) -> dict[str, str] | None:
        return dict(self._pins[revision]) if revision in self._pins else None

    def check_database_login(self, secret_versions: dict[str, str]) -> str | None:
        return None

    def traffic(self, service: str) -> list[Split]:
        return list(self._traffic.get(service, []))

    def revision_healthy(self, service: str, revision: str) -> bool:
        return revision in self._revisions

    def smoke_auth(self, service: str) -> dict[str, str]:
        return {}

    def service_url(self, service: str) -> str:
        return f"{self.base_url}/{service}"

    def migration_head(self) -> str | None:
        return None

    def describe(self) -> dict[str, str]:
        return {}

    # -- mutating ---------------------------------------------------------------------------------
    def build(self, service: str, source_hash: str) -> Artifact:
        self._timed("build", self.latency.build_s)
        self._built.add(source_hash)
        return Artifact(service, source_hash, f"{service}@1", "sha256:1")

    def ensure_secrets(self) -> dict[str, str]:
        return {}

    def add_secret_version(self, name: str, value: str | None) -> str:
        raise DeployctlError("no secrets here")

    def disable_secret_versions(self, name: str, keep: Iterable[str]) -> list[str]:
        return []

    def prepare(self, artifacts: dict[str, Artifact], secret_versions: dict[str, str]) -> None:
        pass

    def run_job(self, name: str, job: Job, artifact: Artifact, secret_versions: dict[str, str],
                release_id: str) -> JobRun:
        self._timed("job", self.latency.job_s)
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
        self._timed("traffic", 0.0)
        self._traffic[service] = list(splits)

    def ensure_revision(self, service: str, revision: str) -> Revision:
        return Revision(service, revision, self.service_url(service), "")

    def discard(self, service: str, revision: str) -> None:
        self.discarded.append(revision)

    def retire(self, service: str, keep: list[str]) -> None:
        pass

    def down(self, purge: bool, confirm: Callable[[], None]) -> list[str]:
        return []
