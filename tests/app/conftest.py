"""One embedded Postgres (pgserver) per test session, set up as the deployer sets up a database: an `app`
role that must present its password (scram-sha-256 instead of pgserver's default trust), a database it
owns, and the vector extension created by the superuser (the app role is not one)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.app.support import PASSWORD, alembic

_HBA = "local all postgres trust\nlocal all all scram-sha-256\n"
_fresh = itertools.count(1)


@dataclass
class Postgres:
    server: Any
    socket_dir: str

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(host=self.socket_dir, user="postgres", dbname=dbname, autocommit=True)

    def create_database(self, name: str) -> str:
        """A database owned by the app role, with the extension in place; its SQLAlchemy URL for the role."""
        with self.admin() as db:
            db.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(name)))
        with self.admin(name) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return f"postgresql+psycopg://app:{PASSWORD}@/{name}?host={self.socket_dir}"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root)
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    pg = Postgres(server, str(server.get_postmaster_info().socket_dir))
    (server.pgdata / "pg_hba.conf").write_text(_HBA)
    with pg.admin() as db:
        db.execute("SELECT pg_reload_conf()")
        db.execute(sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(sql.Literal(PASSWORD)))
    yield pg
    server.cleanup()


@pytest.fixture(scope="session")
def database_url(postgres: Postgres) -> str:
    """The shared database `app` (modules that use it migrate it to head first)."""
    return postgres.create_database("app")


@pytest.fixture
def fresh_database_url(postgres: Postgres) -> str:
    """An empty database of the test's own, for schema changes nobody else must see."""
    return postgres.create_database(f"app_fresh_{next(_fresh)}")


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    """The shared database at head, migrated by the real migrate command."""
    out = alembic(database_url, "upgrade", "head")
    assert out.returncode == 0, out.stderr
    return database_url
