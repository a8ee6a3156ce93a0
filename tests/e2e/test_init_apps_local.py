"""The four ``deployctl init`` fixture apps (tests/fixtures/byo) released on the local target with no edit to
the app: each is copied into an empty git repository, ``deployctl init --yes`` writes its stacks, and ``up``
runs what init wrote (the only change to a written file: the stack's router port, so tests run in parallel).

The Starlette app (no database) goes through up, a code change and up, rollback. The three apps with a
database need an extension the embedded Postgres (pgserver: plpgsql and vector only) does not have, so
``up`` must stop with the one line that names it, before anything is built or changed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Project, free_port

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "byo"


class InitApp(Project):
    """A fixture app in its own git repository, with what ``deployctl init --yes`` wrote."""

    def __init__(self, name: str, root: Path, cache: Path) -> None:  # not Project's: no miniapp, init's stack
        self.root, self.port = root, free_port()
        self.env = {**os.environ, "DEPLOYCTL_CACHE_DIR": str(cache), "COLUMNS": "200"}
        self.env.pop("DEPLOYCTL_STATE_DIR", None)
        shutil.copytree(FIXTURES / name, root, ignore=shutil.ignore_patterns("__pycache__"))
        self.git("init", "-q")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "the app")
        self.run("init", "--yes")
        stack = root / "stacks" / "Pulumi.local.yaml"
        text, n = re.subn(r"deployctl:local: \{port: 8080\}", f"deployctl:local: {{port: {self.port}}}",
                          stack.read_text())
        assert n == 1
        stack.write_text(text)

    def git(self, *args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=self.root,
                       check=True, capture_output=True)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10)


@pytest.fixture
def init_app(tmp_path: Path, venv_cache: Path) -> Any:
    made: list[InitApp] = []

    def make(name: str) -> InitApp:
        app = InitApp(name, tmp_path / name, venv_cache)
        made.append(app)
        return app

    yield make
    for app in made:
        app.run("down", "local", "--purge", "--yes", rc=None)


def test_starlette_releases_changes_and_rolls_back_as_init_wrote_it(init_app):
    app = init_app("starlette-pep621")
    app.run("secrets", "set", "local", "QUOTES_API_TOKEN", stdin="token-for-the-test")  # init: "you set it"
    out = app.run("up", "local", timeout=300)
    assert "2/2 checks passed" in out.stderr, out.stderr
    first = app.get("/")
    assert (first.status_code, first.text) == (200, "hello")
    first_revision = first.headers["x-deployctl-revision"]
    assert app.get("/api/ping").text == "pong" and app.get("/healthz").json() == {"status": "ok"}

    code = app.root / "src" / "hello" / "app.py"
    code.write_text(code.read_text().replace('PlainTextResponse("hello")', 'PlainTextResponse("hello, again")'))
    app.run("up", "local", timeout=300)
    second = app.get("/")
    assert (second.status_code, second.text) == (200, "hello, again")
    assert second.headers["x-deployctl-revision"] != first_revision

    app.run("rollback", "local")
    back = app.get("/")
    assert (back.text, back.headers["x-deployctl-revision"]) == ("hello", first_revision)
    assert [r["outcome"] for r in app.ledger()] == ["succeeded", "succeeded", "succeeded"]


@pytest.mark.parametrize(("name", "extension"), [
    ("django-pip", "pg_trgm"), ("flask-poetry", "citext"), ("fastapi-uv", "uuid-ossp"),
])
def test_an_app_whose_extension_the_embedded_postgres_lacks_gets_one_line(init_app, name, extension):
    app = init_app(name)
    out = app.run("up", "local", rc=5)  # a precondition
    assert [line for line in out.stderr.splitlines() if line.startswith("Error: ")] == [
        f"Error: release r0001 failed at build: the embedded Postgres 16.2 (pgserver) has no extension {extension}; "
        "use a Postgres that has it: set deployctl:local.database_url (docs/local.md, Extensions). Nothing serves yet."]
    assert "Traceback" not in out.stderr
    state = app.root / ".deployctl" / "local"
    assert not (state / "secrets.json").exists()
    assert not list((state / "artifacts").glob("*"))  # checked before the build
