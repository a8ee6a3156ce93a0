"""`python -m app.init_indexes`: create the search indexes, idempotently and without locking writes.

Run after a release (deployctl's non-blocking init job). Prints one line per index: created, already
present, or rebuilt (a build interrupted earlier leaves an INVALID index that IF NOT EXISTS would keep).
A run that finds another one in progress leaves the work to it. Failures are one line on stderr and
exit 1; they carry the error's class and, for server-side errors, Postgres's message — never the URL.
"""

from __future__ import annotations

import sys

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from app import db

TABLE = "notes"
INDEXES = {
    "notes_tags_gin": f"CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_tags_gin ON {TABLE} USING gin (tags)",
    "notes_embedding_hnsw": f"CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_embedding_hnsw "
                            f"ON {TABLE} USING hnsw (embedding vector_cosine_ops)",
}
INIT_LOCK = 4_212_022  # one index build at a time: a concurrent run would see the other's build as INVALID


class Failed(Exception):  # noqa: N818 - reads as the outcome it reports
    """An expected failure, reported as one line."""


def _validity(conn: Connection) -> dict[str, bool]:
    """The existing indexes on the table, and whether each is valid."""
    if conn.scalar(text("SELECT to_regclass(:t)"), {"t": TABLE}) is None:
        raise Failed(f"table {TABLE} does not exist: run the migrations first")
    rows = conn.execute(text("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                             " WHERE i.indrelid = to_regclass(:t)"), {"t": TABLE})
    return {str(name): bool(valid) for name, valid in rows}


def build(conn: Connection) -> None:
    """Create the missing indexes, printing one line per index as it is done (an HNSW build takes time)."""
    existing = _validity(conn)
    for name, ddl in INDEXES.items():
        if existing.get(name):
            print(f"{name}: already present", flush=True)
            continue
        if name in existing:
            conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        conn.execute(text(ddl))
        print(f"{name}: {'rebuilt (was invalid)' if name in existing else 'created'}", flush=True)


def _describe(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    name = type(orig or exc).__name__
    # a server-side error's primary message names objects, not credentials; connection errors (SQLSTATE
    # classes 08 and 28, or none) may name the host or the user, so they are reported by class only
    if isinstance(orig, psycopg.Error) and orig.sqlstate and not orig.sqlstate.startswith(("08", "28")):
        return f"{name}: {orig.diag.message_primary}"
    return name


def main() -> int:
    try:
        # CREATE INDEX CONCURRENTLY cannot run inside a transaction block
        with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": INIT_LOCK}):
                print("init_indexes: another run is building the indexes; leaving it to that run")
                return 0
            try:
                build(conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": INIT_LOCK})
    except db.NotConfigured:
        return _fail("DATABASE_URL is not set")
    except Failed as exc:
        return _fail(str(exc))
    except SQLAlchemyError as exc:
        return _fail(f"database error: {_describe(exc)}")
    return 0


def _fail(message: str) -> int:
    print(f"init_indexes: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
