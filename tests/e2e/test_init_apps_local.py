"""The four ``deployctl init`` fixture apps (tests/fixtures/byo) released on the local target with no edit to
the app: each is copied into an empty git repository, ``deployctl init --yes`` writes its stacks, and ``up``
runs what init wrote (the only change to a written file: the stack's router port, so tests run in parallel).

The Starlette app (no database) goes through up, a code change and up, rollback. The three apps with a
database need an extension the embedded Postgres (pgserver: plpgsql and vector only) does not have, so
``up`` must stop with the one line that names it, before anything is built or changed. With a system
Postgres that has contrib (found by ``pg_config --bindir``; skipped, saying so, where there is none) and
``deployctl:local.database_url`` pointing at it, the Django app goes through up, a code change and up,
rollback and a DB_PASSWORD rotation (the Flask and FastAPI fixtures' locks are not installable: placeholder
hashes, a uv.lock uv cannot parse)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

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


def _system_postgres_bin() -> Path | None:
    """The bin directory of this machine's Postgres (``pg_config --bindir``, else ``initdb`` on PATH)."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    if shutil.which("initdb"):
        candidates.append(Path(str(shutil.which("initdb"))).resolve().parent)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


@pytest.fixture
def system_postgres() -> Iterator[str]:
    """A system Postgres in a temporary data directory, on its own socket directory only (so on the default
    port, which a socket URL without a port assumes); yields its admin URL."""
    bindir = _system_postgres_bin()
    if bindir is None:
        pytest.skip("no system Postgres here (pg_config --bindir, initdb on PATH): the full cycle with "
                    "deployctl:local.database_url did NOT run")
    user = None
    if os.geteuid() == 0:  # initdb refuses root; pgserver made this user for the same reason
        try:
            user = pwd.getpwnam("pgserver").pw_name
        except KeyError:
            pytest.skip("running as root without a pgserver user to run the system Postgres: did NOT run")
    sock = Path(tempfile.mkdtemp(prefix="pg-"))  # short (a socket path), and the server's user can enter it
    data = sock / "data"
    if user:
        shutil.chown(sock, user)

    def pg(*args: str) -> None:
        out = subprocess.run([str(bindir / args[0]), *args[1:]], capture_output=True, text=True, user=user,
                             cwd=sock, timeout=60, check=False)
        assert out.returncode == 0, f"{args[0]}: {out.stderr}"

    pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "--locale=C", "-E", "UTF8")
    pg("pg_ctl", "-D", str(data), "-w", "-l", str(data / "log"), "-o", f"-k {sock} -c listen_addresses=''", "start")
    yield f"postgresql://postgres@/postgres?host={sock}"
    pg("pg_ctl", "-D", str(data), "-w", "-m", "fast", "stop")
    shutil.rmtree(sock, ignore_errors=True)


def test_django_on_a_system_postgres_releases_changes_rolls_back_and_rotates(init_app, system_postgres):
    app = init_app("django-pip")
    stack_file = app.root / "stacks" / "Pulumi.local.yaml"
    stack = yaml.safe_load(stack_file.read_text())
    stack["config"]["deployctl:local"]["database_url"] = system_postgres
    # init's report: "DJANGO_ALLOWED_HOSTS: required by mysite/settings.py (no default): set it under …env"
    stack["config"]["deployctl:services"]["web"]["env"] = {"DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    stack_file.write_text(yaml.safe_dump(stack))
    app.run("up", "local", timeout=300)
    first = app.get("/")
    assert first.status_code == 200  # the index queried the migrated polls table
    first_revision = first.headers["x-deployctl-revision"]
    assert app.get("/health/").json() == {"status": "ok"}

    code = app.root / "polls" / "views.py"
    code.write_text(code.read_text().replace('{"status": "ok"}', '{"status": "ok", "again": True}'))
    app.run("up", "local", timeout=300)
    second = app.get("/health/")
    assert second.json() == {"status": "ok", "again": True}
    assert second.headers["x-deployctl-revision"] != first_revision

    app.run("rollback", "local")
    back = app.get("/health/")
    assert (back.json(), back.headers["x-deployctl-revision"]) == ({"status": "ok"}, first_revision)

    out = app.run("secrets", "rotate", "local", "DB_PASSWORD")
    assert "DB_PASSWORD rotated to v2" in out.stdout
    rotated = app.get("/")
    assert rotated.status_code == 200 and rotated.headers["x-deployctl-revision"] not in (
        first_revision, second.headers["x-deployctl-revision"])
    assert app.get("/health/").json() == {"status": "ok"}  # the rolled-back code, with the new password
