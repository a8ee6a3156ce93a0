"""Rollback safety on the local target (issue 12): a rollback never lands on a revision pinned to a
disabled secret version (it refuses, or repins the release's code to the current versions), never on a
database login nobody knows, and never silently across a migration that is not rollback-safe."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.e2e

DROP_EMAIL = '''"""Drop notes.email (contract): the release before still reads it."""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.drop_column("notes", "email")
'''


def _startup_answers(project: Project, times: int = 12) -> list[int]:
    """/startup opens a new database connection on every call, with the serving revision's DATABASE_URL."""
    return [httpx.get(f"{project.url}/startup", timeout=10).status_code for _ in range(times)]


def test_rollback_after_a_secret_rotation_refuses_then_repins_to_the_current_versions(project: Project) -> None:
    project.run("up", "local")
    first = project.serving()
    project.run("secrets", "rotate", "local", "SECRET_KEY")  # r0002: SECRET_KEY v2; v1 is disabled
    rotated = project.serving()
    assert project.status()["secret_versions"] == {"api": {"SECRET_KEY": "2", "DATABASE_URL": "1"}}

    out = project.run("rollback", "local", rc=5)
    assert project.error(out) == "Error: release r0001 is pinned to SECRET_KEY v1, which is disabled"
    assert "Hint: Deploy its code again pinned to the current versions: deployctl rollback local --to r0001 " \
           "--repin" in out.stderr
    assert project.serving() == rotated and [r["id"] for r in project.ledger()] == ["r0002", "r0001"]

    out = project.run("rollback", "local", "--repin")
    repinned = project.serving()
    assert repinned not in (first, rotated)
    record, _, released = project.ledger()
    assert (record["kind"], record["outcome"], record["restored"]) == ("rollback", "succeeded", "r0001")
    assert record["revisions"] == {"api": repinned} and record["artifacts"] == released["artifacts"]
    assert record["secret_versions"] == {"SECRET_KEY": "2", "DB_PASSWORD": "1", "DATABASE_URL": "1"}
    assert [s["name"] for s in record["stages"]] == ["build", "deploy", "smoke", "promote"]
    assert "database login app accepts DB_PASSWORD v1" in record["stages"][2]["detail"]
    assert "rolled back to release r0001" in out.stdout and "pinned to DATABASE_URL v1, DB_PASSWORD v1, " \
           "SECRET_KEY v2" in out.stdout
    assert project.status()["secret_versions"] == {"api": {"SECRET_KEY": "2", "DATABASE_URL": "1"}}
    assert _startup_answers(project) == [200] * 12


def test_rollback_after_a_database_password_rotation_repins_by_default_and_reaches_the_database(
    project: Project,
) -> None:
    project.run("up", "local")
    project.run("secrets", "rotate", "local", "DB_PASSWORD")  # r0002: app_b gets v2; app's password scrambled
    project.variant(VERSION=2)  # the working tree moves on; the rollback deploys r0001's artifact, not this

    out = project.run("rollback", "local", "--no-repin", rc=5)
    assert project.error(out) == ("Error: release r0001 is pinned to DATABASE_URL v1 (disabled), "
                                  "DB_PASSWORD v1 (disabled)")
    project.run("rollback", "local")
    record = project.ledger()[0]
    assert (record["kind"], record["restored"], record["outcome"]) == ("rollback", "r0001", "succeeded")
    assert record["secret_versions"]["DB_PASSWORD"] == "2" and record["secret_versions"]["DATABASE_URL"] == "2"
    assert "database login app_b accepts DB_PASSWORD v2" in record["stages"][2]["detail"]
    assert project.serving() == record["revisions"]["api"]
    assert httpx.get(f"{project.url}/health").json()["v"] == 1  # r0001's code
    assert project.status()["secret_versions"] == {"api": {"SECRET_KEY": "1", "DATABASE_URL": "2"}}
    assert _startup_answers(project) == [200] * 12


def test_rollback_refuses_to_cross_a_migration_that_is_not_rollback_safe(project: Project) -> None:
    project.run("up", "local")  # r0001: the database is at 0001
    first = project.serving()
    (project.root / "app" / "migrations" / "versions" / "0005_drop_email.py").write_text(DROP_EMAIL)
    project.variant(VERSION=5)  # the stand-in migrate job takes the database to 0005

    warning = ("Warning: migration 0005_drop_email (line 10) drops column notes.email: stop using it in one "
               "release, drop it in a later one (expand/contract: the serving release's code still runs on this "
               "schema during the release and after a rollback (docs/runbook.md, Migration rules))")
    assert warning in project.run("plan", "local").stdout
    assert project.run("up", "local", "--dry-run").stdout.count("Warning: ") == 1
    project.run("up", "local")
    second = project.serving()

    out = project.run("rollback", "local", rc=5)
    assert project.error(out) == ("Error: rollback to r0001 crosses migration 0005_drop_email (r0002): release "
                                  "r0001's code ran on 0001")
    assert "deployctl rollback local --to r0001 --accept-schema" in out.stderr
    assert project.serving() == second and len(project.ledger()) == 2

    project.run("rollback", "local", "--accept-schema")
    assert project.serving() == first
    record = project.ledger()[0]
    assert (record["kind"], record["restored"], record["revisions"]) == ("rollback", "r0001", {"api": first})
    assert record["accepted_risks"] == ["schema:0005_drop_email"]
    assert record["migration_before"] == record["migration_after"] == "0005"  # the schema stays where it is
    assert [s["name"] for s in record["stages"]] == ["smoke", "promote"]
