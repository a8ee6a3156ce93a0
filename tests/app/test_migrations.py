"""The migrate job: `alembic -c app/alembic.ini upgrade head` from the repo root, as deployctl runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.app.support import PASSWORD, ROOT, alembic, alembic_command, columns, environment, head, unreachable_url


def test_every_revision_goes_up_and_down(fresh_database_url: str) -> None:
    url = fresh_database_url
    assert alembic(url, "upgrade", "head").returncode == 0
    assert head(url) == "0002"
    assert {"id", "title", "body", "created_at", "tags", "embedding"} <= columns(url)

    out = alembic(url, "downgrade", "-1")
    assert out.returncode == 0, out.stderr
    assert head(url) == "0001" and columns(url) == {"id", "title", "body", "created_at"}

    assert alembic(url, "downgrade", "base").returncode == 0
    assert head(url) is None and columns(url) == set()

    assert alembic(url, "upgrade", "head").returncode == 0
    assert head(url) == "0002" and "embedding" in columns(url)


def test_concurrent_runs_take_turns(fresh_database_url: str) -> None:
    # without the advisory lock the second CREATE TABLE waits for the first, then fails (DuplicateTable)
    procs = [subprocess.Popen(alembic_command("upgrade", "head"), cwd=ROOT, env=environment(fresh_database_url),
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert head(fresh_database_url) == "0002"


def test_without_database_url_it_says_so_in_one_line() -> None:
    out = alembic(None, "upgrade", "head")
    assert out.returncode == 1 and out.stderr == "migrate: DATABASE_URL is not set\n"


def test_an_unreachable_database_is_one_line_without_secrets(tmp_path: Path) -> None:
    out = alembic(unreachable_url(tmp_path), "upgrade", "head")
    assert out.returncode == 1
    assert out.stderr == "migrate: cannot connect to the database (OperationalError)\n"
    assert PASSWORD not in out.stdout + out.stderr


def test_offline_mode_prints_the_sql_without_a_database(tmp_path: Path) -> None:
    out = alembic(unreachable_url(tmp_path), "upgrade", "head", "--sql")
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE notes" in out.stdout and "ADD COLUMN embedding VECTOR(8)" in out.stdout
