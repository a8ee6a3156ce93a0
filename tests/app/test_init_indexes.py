"""The init job: `python -m app.init_indexes` from the repo root, as deployctl runs it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from app.init_indexes import INIT_LOCK
from tests.app.support import PASSWORD, alembic, connect, init_indexes, unreachable_url

BOTH = ("notes_tags_gin", "notes_embedding_hnsw")


def _indexes(url: str) -> dict[str, str]:
    """Valid indexes on notes, by name, with their definitions."""
    with connect(url) as conn:
        rows = conn.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                            " JOIN pg_class c ON c.oid = i.indexrelid"
                            " WHERE i.indrelid = 'notes'::regclass AND i.indisvalid")
        return {str(name): str(ddl) for name, ddl in rows}


def test_a_second_run_finds_both_indexes(fresh_database_url: str) -> None:
    url = fresh_database_url
    assert alembic(url, "upgrade", "head").returncode == 0
    first, second = init_indexes(url), init_indexes(url)
    assert first.returncode == 0 and first.stdout.splitlines() == [f"{name}: created" for name in BOTH], first.stderr
    assert second.returncode == 0 and second.stdout.splitlines() == [f"{name}: already present" for name in BOTH]
    indexes = _indexes(url)
    assert "USING gin (tags)" in indexes["notes_tags_gin"]
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["notes_embedding_hnsw"]


def test_an_index_left_invalid_by_a_failed_build_is_rebuilt(fresh_database_url: str) -> None:
    url = fresh_database_url
    assert alembic(url, "upgrade", "head").returncode == 0
    with connect(url) as conn:
        conn.execute("INSERT INTO notes (title) VALUES ('twin'), ('twin')")
        # a failed concurrent build leaves its index behind, INVALID, under the name init uses
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY notes_tags_gin ON notes (title)")
    assert "notes_tags_gin" not in _indexes(url)
    out = init_indexes(url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["notes_tags_gin: rebuilt (was invalid)", "notes_embedding_hnsw: created"]
    assert "USING gin (tags)" in _indexes(url)["notes_tags_gin"]


def test_a_run_leaves_the_work_to_one_in_progress(migrated: str) -> None:
    with connect(migrated) as other_run:
        other_run.execute("SELECT pg_advisory_lock(%s)", (INIT_LOCK,))
        out = init_indexes(migrated)
    assert out.returncode == 0
    assert out.stdout == "init_indexes: another run is building the indexes; leaving it to that run\n"


def test_before_the_migrations_it_says_what_to_do(fresh_database_url: str) -> None:
    out = init_indexes(fresh_database_url)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "init_indexes: table notes does not exist: run the migrations first\n"


def test_an_unreachable_database_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    out = init_indexes(unreachable_url(tmp_path))
    assert out.returncode == 1
    assert out.stderr == "init_indexes: database error: OperationalError\n"
    assert PASSWORD not in out.stderr and str(tmp_path) not in out.stderr


def test_without_database_url_it_says_so() -> None:
    out = init_indexes(None)
    assert out.returncode == 1 and out.stderr == "init_indexes: DATABASE_URL is not set\n"
