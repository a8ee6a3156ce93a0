"""The local stack's Postgres: pgserver's embedded Postgres 16 + pgvector, data kept in the state dir.

Rule: the server outlives each deployctl command (it stops on ``deployctl down``). It listens on a unix
socket only. The ``postgres`` superuser connects over that socket without a password (administration
only); the application role must present its password (scram-sha-256), so a rotated password is real.
The app role owns its database; extensions are created by the superuser, as a Cloud SQL admin would.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deployctl import naming
from deployctl.config import Database
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.pipeline import dblogins

_HBA = """# written by deployctl: superuser over the local socket, every other role by password
local all postgres trust
local all all scram-sha-256
"""


class LocalDatabase:
    """The embedded server, or (with *admin_url*) an existing Postgres that deployctl administers."""

    def __init__(self, pgdata: Path, config: Database, admin_url: str | None = None) -> None:
        self.pgdata = pgdata
        self.config = config
        self.admin_url = admin_url
        self._socket: str | None = None

    def running(self) -> bool:
        if self.admin_url:
            return True
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.is_file():
            return False
        import psutil

        try:
            return psutil.pid_exists(int(pid_file.read_text().split()[0]))
        except (ValueError, IndexError):
            return False

    def start(self) -> None:
        """Start Postgres if it is not running (about a second the first time) and enforce passwords."""
        if self._socket is not None:
            return
        if self.admin_url:
            self._socket = _host_of(self.admin_url)
            return
        pgserver = _pgserver()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise DeployctlError(
                f"the embedded Postgres did not start ({type(exc).__name__})",
                f"See its log: {self.pgdata / 'log'}",
            ) from None
        info = server.get_postmaster_info()
        self._socket = str(info.socket_dir)
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() != _HBA:
            hba.write_text(_HBA)
            with self.admin() as db:
                db.execute("SELECT pg_reload_conf()")

    def facts(self) -> dict[str, str]:
        self.start()
        assert self._socket is not None
        port = _port_of(self.admin_url) if self.admin_url else naming.POSTGRES_PORT
        return naming.db_facts(user=self.config.user, name=self.config.name, connection="local",
                               socket=self._socket, port=port)

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[Any]:
        import psycopg

        assert self._socket is not None
        try:
            if self.admin_url:
                conn = psycopg.connect(self.admin_url, dbname=dbname, autocommit=True, connect_timeout=5)
            else:
                conn = psycopg.connect(host=self._socket, user="postgres", dbname=dbname, autocommit=True,
                                       connect_timeout=5)
        except psycopg.OperationalError as exc:
            where = "deployctl:local.database_url" if self.admin_url else f"the embedded Postgres ({self.pgdata})"
            raise DeployctlError(f"cannot connect to {where}: {type(exc).__name__}",
                                 "Check that the server runs and the URL's user may create roles.") from None
        with conn:
            yield conn

    def sync_roles(self, login: str, password: str) -> None:
        """Make the role's two logins, its database and the vector extension exist; *login* gets *password*.

        The alternate login is a member of the role and its sessions run as the role (``SET role``), so
        objects it creates belong to the role (see deployctl/pipeline/dblogins.py).
        """
        from psycopg import sql

        self.start()
        user, alternate = self.config.logins
        name = self.config.name
        with self.admin() as db:
            for role in (user, alternate):
                if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    secret = password if role == login else dblogins.unknown_password()
                    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                                 sql.Literal(secret)))
            db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(user), sql.Identifier(alternate)))
            db.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(sql.Identifier(alternate), sql.Literal(user)))
            db.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(login), sql.Literal(password)))
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(user)))
        with self.admin(name) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def set_password(self, login: str, password: str) -> None:
        """Set one login's password (the rotation's first and last steps)."""
        self.sync_roles(login, password)

    def refusal(self, login: str, password: str) -> str | None:
        """Why the database refuses a connection as *login* with *password* (None: it accepts it), the way
        the application connects: by password, to the stack's database."""
        import psycopg

        facts = self.facts()
        try:
            with psycopg.connect(host=facts["db_host"], port=facts["db_port"], user=login, password=password,
                                 dbname=self.config.name, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:  # the server's text names the user, never the password
            said = str(exc)
            return "password authentication failed" if "password authentication failed" in said \
                else type(exc).__name__
        return None

    def migration_head(self) -> str | None:
        if not self.running():
            return None
        import psycopg

        self.start()
        try:
            with self.admin(self.config.name) as db:
                row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.Error:
            return None
        return str(row[0]) if row else None

    def stop(self) -> None:
        if self.admin_url or not self.running():
            return
        _commands = _pgserver()._commands
        user = _system_user()
        with contextlib.suppress(subprocess.CalledProcessError):
            _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
        self._socket = None


def _pgserver() -> Any:
    # pgserver logs whole command lines and outputs at ERROR; deployctl reports failures itself
    log = logging.getLogger("pgserver")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root)
            warnings.simplefilter("ignore")
            import pgserver
            import pgserver._commands
    except ImportError:
        raise PreconditionError("pgserver is not installed", "pip install pgserver") from None
    return pgserver


def _host_of(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    return parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]


def _port_of(url: str) -> str:
    from urllib.parse import urlsplit

    return str(urlsplit(url).port or 5432)


def _system_user() -> str | None:
    import os

    return "pgserver" if os.geteuid() == 0 else None
