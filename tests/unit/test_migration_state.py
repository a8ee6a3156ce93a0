"""The migration state reader over a real Postgres (the sample app's embedded one, tests/app/conftest.py):
alembic's head as the real migrate command leaves it, Django's django_migrations as Django writes it, a
database with only a tool deployctl does not know, and one a migrate job never reached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deployctl import migration_state
from deployctl.migration_state import MigrationState
from deployctl.pipeline import migrations
from tests.app.conftest import Postgres, database_url, fresh_database_url, migrated, postgres  # noqa: F401

REPO = Path(__file__).resolve().parents[2]

# as Django's MigrationRecorder creates it (django/db/migrations/recorder.py), and the rows `migrate` writes
# for an app with one migration of its own, in the order it applies them
DJANGO = """
CREATE TABLE django_migrations (id bigserial PRIMARY KEY, app varchar(255) NOT NULL,
                                name varchar(255) NOT NULL, applied timestamptz NOT NULL);
INSERT INTO django_migrations (app, name, applied) VALUES
  ('contenttypes', '0001_initial', now()), ('auth', '0001_initial', now()), ('admin', '0001_initial', now()),
  ('polls', '0001_initial', now()), ('contenttypes', '0002_remove_content_type_name', now()),
  ('sessions', '0001_initial', now());
CREATE TABLE polls_question (id bigserial PRIMARY KEY, question_text varchar(200) NOT NULL);
"""


@pytest.fixture
def fresh(postgres: Postgres, fresh_database_url: str) -> Iterator[psycopg.Connection[Any]]:  # noqa: F811
    """An admin connection to a database of the test's own (the vector extension in it, no table)."""
    with postgres.admin(fresh_database_url.split("@/", 1)[1].partition("?")[0]) as conn:
        yield conn


def test_alembic_head_is_what_the_real_migrate_command_left(postgres: Postgres, migrated: str) -> None:  # noqa: F811
    head = migrations.files_head(migrations.read_all(REPO / "app" / "migrations" / "versions"))
    with postgres.admin("app") as conn:
        state = migration_state.read(conn)
    assert (state.tool, state.head) == ("alembic", head) and head is not None
    assert state.tables >= 2 and not state.empty  # alembic_version and the app's own
    assert state.describe() == f"{head} (alembic)"


def test_django_head_is_the_apps_latest_migration_and_the_count(fresh: psycopg.Connection[Any]) -> None:
    fresh.execute(DJANGO)
    state = migration_state.read(fresh)
    assert state == MigrationState("django", "polls.0001_initial (6 applied)", 2)
    assert state.describe() == "polls.0001_initial (6 applied) (django)"
    # one more of the app's migrations moves the head, and so does one of Django's own (the count)
    fresh.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('auth', '0002_alter_permission', now())")
    assert migration_state.read(fresh).head == "polls.0001_initial (7 applied)"
    fresh.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('polls', '0002_choice', now())")
    assert migration_state.read(fresh).head == "polls.0002_choice (8 applied)"


def test_a_project_with_only_djangos_own_apps_shows_djangos_latest(fresh: psycopg.Connection[Any]) -> None:
    fresh.execute(DJANGO)
    fresh.execute("DELETE FROM django_migrations WHERE app = 'polls'")
    assert migration_state.read(fresh).head == "sessions.0001_initial (5 applied)"


def test_an_unknown_tool_leaves_no_head_but_its_tables_count(fresh: psycopg.Connection[Any]) -> None:
    fresh.execute("CREATE SCHEMA app; CREATE TABLE app.items (id int); CREATE TABLE public.schema_version (v int)")
    state = migration_state.read(fresh)
    assert state == MigrationState(None, None, 2) and not state.empty
    assert state.describe() == "no migration table deployctl knows (2 tables)"


def test_a_database_no_migration_reached_is_empty(fresh: psycopg.Connection[Any]) -> None:
    fresh.execute("CREATE VIEW not_a_table AS SELECT 1 AS one")  # created by the extension step, say: no table
    state = migration_state.read(fresh)
    assert state == MigrationState(None, None, 0) and state.empty
    assert state.describe() == "empty (no tables)"
