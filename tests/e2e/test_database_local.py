"""The local target's Postgres (issue 11): the stack's ``database.extensions`` are checked before any change
(one line naming a missing one) and created by the superuser before migrate; ``local.database_url`` releases,
rotates and serves against any reachable Postgres (here a second pgserver) and leaves no embedded server."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_an_extension_the_embedded_postgres_lacks_is_one_line_before_any_change(project):
    _with_extensions(project, "[vector, uuid-ossp]")
    out = project.run("up", "local", rc=5)  # a precondition
    assert project.error(out) == (
        "Error: release r0001 failed at build: the embedded Postgres 16.2 (pgserver) has no extension uuid-ossp; "
        "use a Postgres that has it: set deployctl:local.database_url (docs/local.md, Extensions). Nothing serves yet.")
    assert "Traceback" not in out.stderr
    assert not (project.state / "secrets.json").exists()  # no secret, role or database was made
    assert [r["outcome"] for r in project.ledger()] == ["failed"]


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
