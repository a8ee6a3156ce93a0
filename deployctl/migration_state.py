"""What a stack's own database says about its migrations, whatever tool ran them.

Rules:
- One reader for every use: ``status``, the ledger's ``migration_before``/``migration_after``, rollback's
  schema guard and the migrate stage's check that the job changed the stack's database.
- The reader issues SQL through the connection it is given and imports no driver: each target opens the
  connection its own way (local: the admin role over the server's socket).
- Alembic's head is ``alembic_version``; Django's is ``django_migrations``, shown compactly as the latest
  applied migration of the app's own code and how many are applied. A tool deployctl does not know leaves
  no head, but its tables still count: a migrate job that exited 0 and left no table in the stack's
  database wrote somewhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Django's own apps: the latest migration shown is the app's, when it has one
_DJANGO_CONTRIB = frozenset({"admin", "auth", "contenttypes", "sessions", "sites", "messages", "staticfiles",
                             "flatpages", "redirects", "postgres", "gis", "humanize", "sitemaps", "syndication"})

# user tables: not the catalog's, not the ones an extension created (postgis's spatial_ref_sys)
_TABLES = """
SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
"""


class Connection(Protocol):
    """What the reader needs of a DB-API connection (psycopg 3's ``Connection.execute``)."""

    def execute(self, query: Any, params: Sequence[Any] | None = ..., /) -> Any: ...


@dataclass(frozen=True)
class MigrationState:
    tool: str | None  # "alembic", "django", or None: no migration table deployctl knows
    head: str | None  # what the ledger records and rollback compares; None without a known tool
    tables: int  # user tables in the stack's database

    @property
    def empty(self) -> bool:
        return self.tables == 0

    def describe(self) -> str:
        """One line for ``status``."""
        if self.head:
            return f"{self.head} ({self.tool})"
        if self.empty:
            return "empty (no tables)"
        return f"no migration table deployctl knows ({self.tables} table{'s' if self.tables != 1 else ''})"


def read(conn: Connection) -> MigrationState:
    """The state of the database *conn* is connected to."""
    tables = int(conn.execute(_TABLES).fetchall()[0][0])
    if _exists(conn, "alembic_version"):
        versions = sorted(str(row[0]) for row in conn.execute("SELECT version_num FROM alembic_version").fetchall())
        return MigrationState("alembic", ",".join(versions) or None, tables)
    if _exists(conn, "django_migrations"):
        rows = conn.execute("SELECT app, name FROM django_migrations ORDER BY id").fetchall()
        return MigrationState("django", django_head([(str(a), str(n)) for a, n in rows]), tables)
    return MigrationState(None, None, tables)


def django_head(applied: list[tuple[str, str]]) -> str | None:
    """``polls.0002_choice (19 applied)``: the latest of the app's own migrations (Django's own apps when it
    has none), and the count, which changes with every migration applied or unapplied."""
    if not applied:
        return None
    own = [row for row in applied if row[0] not in _DJANGO_CONTRIB] or applied
    app, name = own[-1]
    return f"{app}.{name} ({len(applied)} applied)"


def _exists(conn: Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (table,)).fetchall()[0][0] is not None
