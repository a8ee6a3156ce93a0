"""End-to-end harness: a throwaway project (the mini app + a local stack on a free port) driven by the
real `deployctl` as a subprocess. Every test tears its stack down (processes and Postgres) at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

FIXTURE = Path(__file__).parent.parent / "fixtures" / "miniapp"
DEPLOYCTL = [sys.executable, "-m", "deployctl"]
VARIANT_DEFAULTS: dict[str, Any] = {
    "VERSION": 1, "STARTUP_STATUS": 200, "DOCS_STATUS": 200, "START_DELAY_S": 0.0,
    "MIGRATE_EXIT": 0, "MIGRATE_SLEEP_S": 0.0, "MIGRATE_PRINTS_URL": False, "INIT_EXIT": 0,
    "DOCS_DELAY_S": 0.0, "INIT_SLEEP_S": 0.0, "MIGRATE_RAISES": False, "MIGRATE_GATE": "", "MIGRATE_SAYS_KEY_AT": 0,
}

STACK = """\
config:
  deployctl:target: local
  deployctl:local: {{port: {port}}}
  deployctl:services:
    api:
      source: app
      command: ["python", "-m", "app"]
      probes: {{startup: {{path: /startup, period_s: 1, failure_threshold: 8}}}}
      secrets: {{SECRET_KEY: SECRET_KEY, DATABASE_URL: DATABASE_URL{extra_env}}}
  deployctl:database: {{name: app, user: app, password_secret: DB_PASSWORD}}
  deployctl:secrets:
    SECRET_KEY: {{source: generated, bytes: 32}}
    DB_PASSWORD: {{source: generated, bytes: 24}}
    DATABASE_URL:
      source: composed
      template: "postgresql+psycopg://{{db_user}}:{{DB_PASSWORD}}@/{{db_name}}?host={{db_socket}}"{extra_secrets}
  deployctl:jobs:
    migrate: {{command: ["python", "-m", "app.migrate"], retries: 1, timeout_s: {migrate_timeout}}}
    init: {{command: ["python", "-m", "app.init"], retries: 0, blocking: false}}
  deployctl:smoke:
    - {{path: /health, body_contains: healthy}}
    - {{path: /startup}}
    - {{path: /docs}}
  deployctl:rollout: {{steps: {steps}, keep_revisions: 2, drain_s: 0}}
"""


class Project:
    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        # a migration started with MIGRATE_GATE=str(project.gate) runs until the file exists (the fixture
        # opens it at teardown, so a failed test leaves no migration behind)
        self.gate = root.parent / "migrate-gate"
        self.port = free_port()
        self.env = {**os.environ, "DEPLOYCTL_CACHE_DIR": str(cache), "COLUMNS": "200"}
        self.env.pop("DEPLOYCTL_STATE_DIR", None)
        shutil.copytree(FIXTURE / "app", root / "app")
        self.write_stack()

    def write_stack(self, *, api_token: bool = False, migrate_timeout: int = 60,
                    steps: tuple[int, ...] = (100,)) -> None:
        (self.root / "stacks").mkdir(exist_ok=True)
        text = STACK.format(
            port=self.port,
            extra_env=", API_TOKEN: API_TOKEN" if api_token else "",
            extra_secrets="\n    API_TOKEN: {source: provided}" if api_token else "",
            migrate_timeout=migrate_timeout,
            steps=list(steps),
        )
        (self.root / "stacks" / "Pulumi.local.yaml").write_text(text)

    def variant(self, **values: Any) -> None:
        merged = {**VARIANT_DEFAULTS, **values}
        (self.root / "app" / "variant.py").write_text("".join(f"{k} = {v!r}\n" for k, v in merged.items()))

    def run(self, *args: str, rc: int | None = 0, stdin: str | None = None, timeout: float = 120) -> Any:
        out = subprocess.run([*DEPLOYCTL, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                             input=stdin, timeout=timeout)
        if rc is not None:
            assert out.returncode == rc, f"exit {out.returncode} != {rc}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        return out

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*DEPLOYCTL, *args], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    @staticmethod
    def error(out: Any) -> str:
        """The `Error: …` line (progress lines share stderr with it)."""
        lines = [ln for ln in out.stderr.splitlines() if ln.startswith("Error: ")]
        assert lines, out.stderr
        return str(lines[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serving(self) -> str:
        """The revision that answers the stable URL (from the router's header and the app itself)."""
        response = httpx.get(f"{self.url}/health", timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["revision"] == response.headers["x-deployctl-revision"]
        return str(response.headers["x-deployctl-revision"])

    def ledger(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run("releases", "local", "--json", "--limit", "100").stdout))

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.run("status", "local", "--json").stdout))

    @property
    def state(self) -> Path:
        return self.root / ".deployctl" / "local"


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the whole run, shared by xdist workers (builds take a file lock)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base
    cache = shared / "deployctl-cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture
def project(tmp_path: Path, venv_cache: Path) -> Any:
    proj = Project(tmp_path / "proj", venv_cache)
    proj.variant()
    yield proj
    proj.gate.touch()
    proj.run("down", "local", "--purge", "--yes", rc=None)


class SteadyClient:
    """A bounded loop of GET *path* on the stable URL on loopback, in a thread, while a command runs: every
    answer that is not a 200 is a failure a user would have seen. With ``keep_alive=False`` each request opens
    a new connection (a probe that opens one per call reaches the app's database every time)."""

    def __init__(self, url: str, path: str = "/health", *, keep_alive: bool = True, pause_s: float = 0.01,
                 most: int = 20_000) -> None:
        self.url, self.path, self.keep_alive, self.pause_s, self.most = url, path, keep_alive, pause_s, most
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        opened = httpx.Client(timeout=10) if self.keep_alive else contextlib.nullcontext(httpx)
        with opened as http:
            while self.sent < self.most and not self._stop.is_set():
                try:
                    answer = http.get(f"{self.url}{self.path}", timeout=10)
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} from {answer.headers.get('x-deployctl-revision')}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self.sent += 1
                time.sleep(self.pause_s)

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
