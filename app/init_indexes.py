"""`python -m app.init_indexes`: create the search indexes, idempotently and without locking writes.

Run after a release (deployctl's non-blocking init job). Prints one line per index; exits 1 with a
one-line message when the database cannot be reached.
"""

from __future__ import annotations

import sys

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import db

INDEXES = {
    "notes_tags_gin": "CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_tags_gin ON notes USING gin (tags)",
    "notes_embedding_hnsw": "CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_embedding_hnsw "
                            "ON notes USING hnsw (embedding vector_cosine_ops)",
}


def main() -> int:
    try:
        # CREATE INDEX CONCURRENTLY cannot run inside a transaction block
        with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            existing = set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'notes'")))
            for name, ddl in INDEXES.items():
                if name in existing:
                    print(f"{name}: already present")
                    continue
                conn.execute(text(ddl))
                print(f"{name}: created")
    except db.NotConfigured:
        print("init_indexes: DATABASE_URL is not set", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"init_indexes: database error: {type(getattr(exc, 'orig', None) or exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
