"""Bringing your own app (issue 11) to the local target: a uv workspace with the backend in a subdirectory,
POSTGRES_* settings from the database facts over TCP, a package with its own entry point; a dependency spec
that does not install fails the build in one line; a failed migration is explained by its exception line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DEPLOYCTL, Project
from tests.ports import free_port

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

UV_STACK = """\
config:
  deployctl:target: local
  deployctl:local: {{port: {port}}}
  deployctl:services:
    api:
      source: backend
      workdir: .
      command: ["python", "-m", "app.main"]
      probes: {{startup: {{path: /startup, period_s: 1, failure_threshold: 20}}}}
      env:
        POSTGRES_SERVER: "{{db_host}}"
        POSTGRES_PORT: "{{db_port}}"
        POSTGRES_USER: "{{db_user}}"
        POSTGRES_DB: "{{db_name}}"
        POSTGRES_SOCKET: "{{db_socket}}"
      secrets: {{POSTGRES_PASSWORD: DB_PASSWORD}}
  deployctl:database: {{name: app, user: app, password_secret: DB_PASSWORD}}
  deployctl:secrets:
    DB_PASSWORD: {{source: generated, bytes: 24}}
  deployctl:jobs:
    migrate: {{command: ["byo-migrate"], retries: 0, timeout_s: 60}}
  deployctl:smoke:
    - {{path: /health, json: {{status: ok, db: {{tcp: true, socket: true, items_table: true}}}}}}
    - {{path: /items, method: POST, headers: {{X-Smoke: "yes"}}, expect_status: 201, json: {{created: true}}}}
  deployctl:rollout: {{steps: [100], keep_revisions: 2, drain_s: 0}}
"""

PLAIN_STACK = """\
config:
  deployctl:target: local
  deployctl:local: {{port: {port}}}
  deployctl:services:
    api: {{source: app, command: ["python", "-m", "app"]}}
  deployctl:database: null
  deployctl:jobs: {{migrate: null}}
"""


class App:
    """A throwaway project in its own git repository, driven by the real deployctl."""

    def __init__(self, root: Path, cache: Path, stack: str) -> None:
        self.root, self.port = root, free_port()
        self.env = {**os.environ, "DEPLOYCTL_CACHE_DIR": str(cache), "COLUMNS": "200"}
        self.env.pop("DEPLOYCTL_STATE_DIR", None)
        (root / "stacks").mkdir(parents=True, exist_ok=True)
        (root / "stacks" / "Pulumi.local.yaml").write_text(stack.format(port=self.port))

    def git(self, *args: str) -> str:
        out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=self.root,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def run(self, *args: str, rc: int | None = 0) -> Any:
        out = subprocess.run([*DEPLOYCTL, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                             timeout=600)
        said = f"exit {out.returncode} != {rc}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        assert rc is None or out.returncode == rc, said
        return out

    def ledger(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run("releases", "local", "--json").stdout))

    def manifest(self, ref: str) -> dict[str, Any]:
        return dict(json.loads((self.root / ".deployctl" / "local" / "artifacts" / ref /
                                ".deployctl-artifact.json").read_text()))


@pytest.fixture
def uv_app(tmp_path: Path, venv_cache: Path) -> Any:
    shutil.copytree(FIXTURES / "uvworkspace", tmp_path / "proj")
    app = App(tmp_path / "proj", venv_cache, UV_STACK)
    app.git("init", "-q")
    app.git("add", "-A")
    app.git("commit", "-q", "-m", "the app")
    yield app
    app.run("down", "local", "--purge", "--yes", rc=None)


def test_a_uv_workspace_backend_releases_with_postgres_settings_over_tcp(uv_app: App) -> None:
    out = uv_app.run("up", "local")
    assert "migrate-r0001" in out.stderr and "2/2 checks passed" in out.stderr
    health = httpx.get(f"http://127.0.0.1:{uv_app.port}/health", timeout=10).json()
    assert health["host"] == "127.0.0.1" and health["db"] == {"tcp": True, "socket": True, "items_table": True}
    assert health["version"] == "0.3.0"  # the backend project itself is installed (and ran byo-migrate)
    [record] = uv_app.ledger()
    ref = record["artifacts"]["api"]
    assert health["cwd"].endswith(f"/artifacts/{ref}/backend")  # workdir: . is the source
    manifest = uv_app.manifest(ref)
    assert (manifest["deps"], manifest["site"]) == ("uv.lock", ".deployctl-site")
    site_packages = {p.name.split("-")[0].lower() for p in Path(manifest["venv"]).glob("lib/python*/site-packages/*")}
    assert "psycopg" in site_packages
    assert not site_packages & {"byo_backend", "app", "iniconfig"}  # no app code, no dev group in the shared venv
    # the app repository's commit; .deployctl/ (not ignored here) does not make the tree dirty
    assert (record["git_sha"], record["git_dirty"]) == (uv_app.git("rev-parse", "HEAD"), False)

    with open(uv_app.root / "backend" / "app" / "main.py", "a") as handle:
        handle.write("\n# an uncommitted change\n")
    uv_app.run("up", "local")
    second = uv_app.ledger()[0]
    assert (second["git_sha"], second["git_dirty"]) == (record["git_sha"], True)
    assert uv_app.manifest(second["artifacts"]["api"])["venv"] == manifest["venv"]  # code only: same venv


@pytest.mark.skipif(sys.platform != "linux", reason="reads the revision's environment from /proc")
def test_the_db_user_in_env_follows_the_password_through_a_rotation(uv_app: App) -> None:
    uv_app.run("up", "local")
    out = uv_app.run("secrets", "rotate", "local", "DB_PASSWORD")
    assert "DB_PASSWORD rotated to v2" in out.stdout
    # the new revision logs in as the idle login its password belongs to; its smoke checks connected with it
    revision = httpx.get(f"http://127.0.0.1:{uv_app.port}/health", timeout=10).headers["x-deployctl-revision"]
    state = json.loads((uv_app.root / ".deployctl" / "local" / "revisions" / f"{revision}.json").read_text())
    assert b"POSTGRES_USER=app_b" in Path(f"/proc/{state['pid']}/environ").read_bytes().split(b"\0")


def test_a_dependency_that_does_not_install_fails_the_build_in_one_line(tmp_path: Path, venv_cache: Path) -> None:
    app = App(tmp_path / "proj", venv_cache, PLAIN_STACK)
    (app.root / "app").mkdir()
    (app.root / "app" / "__main__.py").write_text("print('never runs')\n")
    out = app.run("up", "local", rc=5)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: release r0001 failed at build: no dependency spec for app/: no uv.lock, poetry.lock or "
                      "requirements.txt from app/ up to the project root, and no pyproject.toml with a [project] "
                      "table. Nothing serves yet."]
    assert "Hint: Add app/requirements.txt (an empty one if" in out.stderr

    (app.root / "app" / "requirements.txt").write_text("--no-index\nno-such-dependency-for-deployctl==1.0\n")
    out = app.run("up", "local", rc=1)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: release r0002 failed at build: could not install app/requirements.txt: ERROR: No "
                      "matching distribution found for no-such-dependency-for-deployctl==1.0. Nothing serves yet."]
    assert "Traceback" not in out.stderr
    assert [(r["outcome"], r["stages"][-1]["name"]) for r in app.ledger()] == [("failed", "build"), ("failed", "build")]


def test_a_failed_migration_quotes_its_exception_not_the_docs_url(project: Project) -> None:
    project.variant(MIGRATE_RAISES=True)
    out = project.run("up", "local", rc=1)
    line = project.error(out)
    assert ('migration failed after 2 attempt(s): exit code 1: OperationalError: (psycopg.OperationalError) '
            'connection failed: connection to server at "127.0.0.1", port 1 failed.') in line
    assert "sqlalche.me" not in line
