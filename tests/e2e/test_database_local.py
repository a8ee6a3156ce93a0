"""The local target's Postgres (issue 11): the stack's ``database.extensions`` choose the Postgres it runs (the
embedded pgserver for vector, this machine's for contrib: scripts/install-postgres installs it with pgvector
for scripts/test and CI), are checked before any change (one line naming a missing one and what to install)
and created by the superuser before migrate; ``local.database_url`` releases, rotates and serves against any
reachable Postgres (here a second pgserver) and leaves no embedded server."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.e2e


def _with_extensions(project: Any, extensions: str, local: str = "") -> None:
    stack = project.root / "stacks" / "Pulumi.local.yaml"
    text = stack.read_text().replace("password_secret: DB_PASSWORD}",
                                     f"password_secret: DB_PASSWORD, extensions: {extensions}}}")
    if local:
        text = text.replace(f"deployctl:local: {{port: {project.port}}}",
                            f"deployctl:local: {{port: {project.port}, {local}}}")
    stack.write_text(text)


@pytest.fixture
def other_postgres(tmp_path: Path) -> Iterator[Any]:
    """A second Postgres (another pgserver, its own data directory), stopped at the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    server = pgserver.get_server(tmp_path / "other-pg", cleanup_mode="stop")
    yield server
    server.cleanup()


def test_an_extension_no_postgres_here_has_is_one_line_before_any_change(project):
    _with_extensions(project, "[vector, postgis]")
    out = project.run("up", "local", rc=5)  # a precondition
    line = project.error(out)
    assert line.startswith("Error: release r0001 failed at build: no Postgres on this machine has extension postgis "
                           "(looked at: the embedded Postgres 16.2 (pgserver); "), line
    assert "; install it (apt-get install postgresql-" in line and "-postgis-3) or set deployctl:local.database_url " \
        "to a Postgres that has it (docs/local.md, Extensions). Nothing serves yet." in line, line
    assert "Traceback" not in out.stderr
    assert not (project.state / "secrets.json").exists()  # no secret, role or database was made
    assert not (project.state / "postgres").exists()  # no server was started to find out
    assert [r["outcome"] for r in project.ledger()] == ["failed"]


CLOUD_SQL_SET = ["vector", "uuid-ossp", "pgcrypto", "citext", "pg_trgm", "hstore", "btree_gist"]


@pytest.mark.system_postgres
def test_the_extensions_apps_use_on_cloud_sql_are_all_here_on_this_machines_postgres(project):
    _with_extensions(project, f"[{', '.join(CLOUD_SQL_SET)}]")
    project.run("up", "local")
    project.serving()
    database = project.status()["facts"]["database"]
    assert database.startswith("system Postgres") and "(running" in database, database
    assert json.loads((project.state / "postgres.json").read_text())["kind"] == "system"
    pid = (project.state / "postgres" / "postmaster.pid").read_text().splitlines()
    with psycopg.connect(host=pid[4], port=pid[3], user="postgres", dbname="app") as conn:
        created = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
    assert set(CLOUD_SQL_SET) <= created  # by the admin role, before migrate


@pytest.mark.system_postgres
def test_data_keeps_its_postgres_and_an_extension_it_lacks_says_how_to_move(project):
    project.run("up", "local")  # the mini app's stack: no extension, so the embedded server
    assert project.status()["facts"]["database"].startswith("embedded Postgres 16.2 (pgserver) (running")
    _with_extensions(project, "[uuid-ossp]")
    out = project.run("up", "local", rc=5)
    line = project.error(out)
    assert line.startswith("Error: release r0002 failed at build: the embedded Postgres 16.2 (pgserver) has no "
                           "extension uuid-ossp; this machine's Postgres "), line
    assert ("has it but cannot open this stack's data (Postgres 16): delete the stack's data (deployctl down local "
            "--purge) and release again. Traffic stays on api-00001-") in line, line
    project.serving()  # the first release still serves


def test_database_url_releases_rotates_and_serves_on_another_postgres(project, other_postgres):
    info = other_postgres.get_postmaster_info()
    url = f"postgresql://postgres@/postgres?host={info.socket_dir}"
    _with_extensions(project, "[vector]", local=f'database_url: "{url}"')
    project.run("up", "local")
    first = project.serving()
    assert [r["outcome"] for r in project.ledger()] == ["succeeded"]
    assert not (project.state / "postgres").exists()  # the embedded server was never started
    facts = project.status()
    assert "external Postgres" in str(facts), facts

    def other(sql: str, db: str = "app") -> str:
        return str(other_postgres.psql(f"\\c {db}\n{sql}"))

    assert "vector" in other("SELECT extname FROM pg_extension")  # created by the admin role, before migrate
    assert " app" in other("SELECT rolname FROM pg_roles WHERE rolname LIKE 'app%'", "postgres")
    project.run("secrets", "rotate", "local", "DB_PASSWORD")
    assert project.serving() != first
    assert [r["outcome"] for r in project.ledger()][-1] == "succeeded"
