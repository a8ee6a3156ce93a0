"""Secrets on the local target: rotation (including the database password) and a canary that must
never leak into output, logs or the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import Project, SteadyClient

pytestmark = pytest.mark.e2e

CANARY = "tok_CANARY-7f3e9a1c5b2d4e6f8a0b"


def _store(project: Project) -> dict:  # type: ignore[type-arg]
    return dict(json.loads((project.state / "secrets.json").read_text()))


def _value(project: Project, name: str, version: str) -> str:
    return next(str(v["value"]) for v in _store(project)[name]["versions"] if v["version"] == version)


def _socket(project: Project) -> str:
    """The running server's socket directory, from line 5 of postmaster.pid (pgserver puts the socket in a
    short runtime directory when the data directory's path is too long for a Unix socket)."""
    data_dir = project.root / str(project.status()["facts"]["database"]).split("data in ")[1]
    return (data_dir / "postmaster.pid").read_text().splitlines()[4]


def test_secret_store_is_private(project: Project) -> None:
    project.run("up", "local")
    assert (project.state / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_rotate_db_password_moves_to_the_idle_login_and_the_serving_revision_never_loses_the_database(
    project: Project,
) -> None:
    project.run("up", "local")
    before = project.serving()
    old_password = _value(project, "DB_PASSWORD", "1")
    probe = SteadyClient(project.url, "/startup", keep_alive=False, pause_s=0.02)
    with probe:
        out = project.run("secrets", "rotate", "local", "DB_PASSWORD")
    assert "DB_PASSWORD rotated to v2" in out.stdout and "disabled DATABASE_URL v1, DB_PASSWORD v1" in out.stdout
    assert probe.sent > 5 and probe.failures == []  # /startup opens a new connection on every call
    after = project.serving()
    assert after != before
    record = project.ledger()[0]
    assert record["kind"] == "rotate" and record["secret_versions"]["DB_PASSWORD"] == "2"
    assert record["secret_versions"]["DATABASE_URL"] == "2"
    store = _store(project)
    states = {v["version"]: v["state"] for v in store["DB_PASSWORD"]["versions"]}
    assert states == {"1": "disabled", "2": "enabled"}
    assert store["DB_PASSWORD"]["versions"][1]["login"] == "app_b"
    new_password = _value(project, "DB_PASSWORD", "2")
    assert "://app_b:" in _value(project, "DATABASE_URL", "2")
    socket_dir = _socket(project)
    for user, password in (("app", old_password), ("app_b", old_password), ("app", new_password)):
        with pytest.raises(psycopg.OperationalError):  # the retired login got a password nobody knows
            psycopg.connect(host=socket_dir, user=user, dbname="app", password=password, connect_timeout=3)
    with psycopg.connect(host=socket_dir, user="app_b", dbname="app", password=new_password) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == ("app", "app_b")
    assert project.run("up", "local").stdout.startswith("Nothing changed")
    project.run("secrets", "rotate", "local", "DB_PASSWORD")  # and back to the first login
    assert "://app:" in _value(project, "DATABASE_URL", "3")
    assert project.status()["facts"]["database"]  # still reachable


def test_failed_rotation_leaves_the_old_version_serving(project: Project) -> None:
    project.write_stack(api_token=True)
    project.run("secrets", "set", "local", "API_TOKEN", stdin="tok_first")
    project.run("up", "local")
    before = project.serving()
    out = project.run("secrets", "rotate", "local", "API_TOKEN", "--from-stdin", stdin="malformed", rc=1)
    error = project.error(out)
    assert error.startswith(
        "Error: rotation r0002 failed at deploy: the startup probe GET /startup did not answer 200 within")
    # what the undo did, then where traffic is (StageFailed composes its message once, from its fields)
    assert error.endswith(f"The new API_TOKEN version was disabled; the old versions serve. Traffic stays on "
                          f"{before} at {project.url}.")
    assert "malformed" not in out.stderr + out.stdout
    assert project.serving() == before
    states = {v["version"]: v["state"] for v in _store(project)["API_TOKEN"]["versions"]}
    assert states == {"1": "enabled", "2": "disabled"}
    assert project.ledger()[0]["outcome"] == "failed"


def test_composed_and_unknown_secrets_cannot_be_rotated(project: Project) -> None:
    out = project.run("secrets", "rotate", "local", "DATABASE_URL", rc=1)
    assert project.error(out) == "Error: DATABASE_URL is composed from other values"
    assert "Hint: Rotate what it is made of: DB_PASSWORD." in out.stderr
    out = project.run("secrets", "rotate", "local", "NOPE", rc=3)
    assert project.error(out) == "Error: stacks/Pulumi.local.yaml: deployctl:secrets: no secret named 'NOPE'"


def test_provided_secret_without_value_is_a_precondition_error(project: Project) -> None:
    project.write_stack(api_token=True)
    out = project.run("up", "local", rc=5)
    expected = "Error: release r0001 failed at build: secret API_TOKEN has no value yet. Nothing serves yet."
    assert project.error(out) == expected
    assert "deployctl secrets set local API_TOKEN" in out.stderr


def test_a_canary_secret_never_leaks(project: Project) -> None:
    project.write_stack(api_token=True)
    outputs = [project.run("secrets", "set", "local", "API_TOKEN", stdin=CANARY)]
    outputs.append(project.run("up", "local"))
    project.variant(VERSION=2, MIGRATE_PRINTS_URL=True, MIGRATE_EXIT=1)  # a migration that prints the DSN
    outputs.append(project.run("up", "local", rc=1))
    project.variant(VERSION=3)
    for args in (["up", "local"], ["status", "local"], ["status", "local", "--json"], ["releases", "local"],
                 ["releases", "local", "--json"], ["secrets", "list", "local"], ["up", "local", "--dry-run", "--json"],
                 ["secrets", "rotate", "local", "SECRET_KEY"], ["rollback", "local", "--repin"]):
        outputs.append(project.run(*args))
    planted = [CANARY, *(_value(project, n, "1") for n in ("SECRET_KEY", "DB_PASSWORD"))]
    text = "".join(o.stdout + o.stderr for o in outputs)
    for value in planted:
        assert value not in text
    leaked = [p for p in _files(project.state) if any(v.encode() in p.read_bytes() for v in planted)]
    assert leaked == [project.state / "secrets.json"]



def test_a_secret_cut_by_the_quoted_lines_end_is_taken_out_whole(project: Project) -> None:
    """A failed job's quoted line is cut to 300 characters: its log is redacted before, so a value straddling the
    cut leaves no beginning behind, in the error or in the ledger."""
    project.run("up", "local")
    key = _value(project, "SECRET_KEY", "1")
    project.variant(VERSION=2, MIGRATE_SAYS_KEY_AT=300)  # the key's middle at the line's 300th character
    out = project.run("up", "local", rc=1)
    quoted = project.error(out).split("attempt(s): exit code 1: ", 1)[1].split(". Traffic stays on ")[0]
    # redacted before the cut, the line is short enough to be quoted whole
    assert quoted.startswith("error: the signing key was refused: ...") and quoted.endswith("**** (SECRET_KEY)")
    migrate = next(s for s in project.ledger()[0]["stages"] if s["name"] == "migrate")
    assert quoted in migrate["detail"]
    assert not [key[:n] for n in range(4, len(key) + 1) if key[:n] in quoted + migrate["detail"]]

def _files(root: Path) -> list[Path]:
    skip = {"postgres", "artifacts"}  # the database's own files, and copies of the source
    return [p for p in root.rglob("*") if p.is_file() and not skip.intersection(p.relative_to(root).parts)]
