"""The local stack's Postgres: pgserver's embedded Postgres 16 (+ pgvector), or an existing server.

Rule: the server outlives each deployctl command (it stops on ``deployctl down``). It listens on its unix
socket and on 127.0.0.1, on a port of its own that the data directory keeps (so ``{db_host}``/``{db_port}``
stay the same across restarts and stacks never collide); the socket is also reachable under Postgres's
default name (``.s.PGSQL.5432``, a link), so a socket URL without a port works as on Cloud Run. The
``postgres`` superuser connects over the socket without a password (administration only) and never over
TCP; every other role must present its password (scram-sha-256), so a rotated password is real. The app
role owns its database; the stack's extensions (``database.extensions``) are checked before any change and
created by the superuser before the migrations, as a Cloud SQL admin would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deployctl import naming
from deployctl.config import Database
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.pipeline import dblogins

_HBA = """# written by deployctl: superuser over the local socket only, every other role by password
local all postgres trust
local all all scram-sha-256
host all postgres 127.0.0.1/32 reject
host all all 127.0.0.1/32 scram-sha-256
"""
LOOPBACK = "127.0.0.1"


class LocalDatabase:
    """The embedded server, or (with *admin_url*) an existing Postgres that deployctl administers."""

    def __init__(self, pgdata: Path, config: Database, admin_url: str | None = None) -> None:
        self.pgdata = pgdata
        self.config = config
        self.admin_url = admin_url
        self._socket: str | None = None
        self._port = naming.POSTGRES_PORT

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
        self._socket, self._port = str(info.socket_dir), str(info.port)
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() != _HBA:
            hba.write_text(_HBA)
            with self.admin() as db:
                db.execute("SELECT pg_reload_conf()")
        if info.hostname != LOOPBACK:
            self._listen_on_loopback()
        _link_default_socket(Path(self._socket), self._port)

    def _listen_on_loopback(self) -> None:
        """pgserver starts Postgres on its socket only; restart it on 127.0.0.1 too, on a port kept in the data
        directory (ALTER SYSTEM), so the next cold start by pgserver uses the same port."""
        from pgserver.utils import PostmasterInfo

        port = self._port if self._port != naming.POSTGRES_PORT else str(_free_port())
        with self.admin() as db:
            db.execute(f"ALTER SYSTEM SET port = {int(port)}")
        options = f"-h {LOOPBACK} -k {self._socket}"
        try:
            _pgserver()._commands.pg_ctl(["-w", "-m", "fast", "-l", str(self.pgdata / "log"), "-o", options, "restart"],
                                         pgdata=self.pgdata, user=_system_user(), timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self._socket = None
            raise DeployctlError(
                f"the embedded Postgres did not restart on {LOOPBACK}:{port} ({type(exc).__name__})",
                f"Is port {port} in use? See its log: {self.pgdata / 'log'}",
            ) from None
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        self._port = str(info.port if info and info.port else port)

    def facts(self) -> dict[str, str]:
        """DB_FACTS of this server: TCP on 127.0.0.1 and its port, or the socket directory (``{db_socket}``)."""
        self.start()
        assert self._socket is not None
        if self.admin_url:
            return naming.db_facts(user=self.config.user, name=self.config.name, connection="local",
                                   socket=self._socket, port=_port_of(self.admin_url))
        return naming.db_facts(user=self.config.user, name=self.config.name, connection="local",
                               socket=self._socket, port=self._port, host=LOOPBACK)

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[Any]:
        import psycopg

        assert self._socket is not None
        try:
            if self.admin_url:
                conn = psycopg.connect(self.admin_url, dbname=dbname, autocommit=True, connect_timeout=5)
            else:
                conn = psycopg.connect(host=self._socket, port=self._port, user="postgres", dbname=dbname,
                                       autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            where = "deployctl:local.database_url" if self.admin_url else f"the embedded Postgres ({self.pgdata})"
            raise DeployctlError(f"cannot connect to {where}: {type(exc).__name__}",
                                 "Check that the server runs and the URL's user may create roles.") from None
        with conn:
            yield conn

    def check_extensions(self) -> None:
        """Refuse, in one line and before any change, a stack that lists an extension this server lacks."""
        if not self.config.extensions:
            return
        self.start()
        with self.admin() as db:
            available = {row[0] for row in db.execute("SELECT name FROM pg_available_extensions")}
            version = str(db.execute("SHOW server_version").fetchone()[0]).split()[0]
        missing = [name for name in self.config.extensions if name not in available]
        if not missing:
            return
        names = ", ".join(missing)
        noun = "extension" if len(missing) == 1 else "extensions"
        if self.admin_url:
            server = f"the Postgres at deployctl:local.database_url ({version})"
            todo = f"install {'it' if len(missing) == 1 else 'them'} there, or point deployctl:local.database_url " \
                   "at a Postgres that has " + ("it" if len(missing) == 1 else "them")
        else:
            server = f"the embedded Postgres {version} (pgserver)"
            todo = "use a Postgres that has " + ("it" if len(missing) == 1 else "them") + \
                   ": set deployctl:local.database_url (docs/local.md, Extensions)"
        raise PreconditionError(f"{server} has no {noun} {names}; {todo}",
                                "Nothing was changed. deployctl:database.extensions lists what the stack needs.")

    def sync_roles(self, login: str, password: str) -> None:
        """Make the role's two logins, its database and the stack's extensions exist; *login* gets *password*.

        The alternate login is a member of the role and its sessions run as the role (``SET role``), so
        objects it creates belong to the role (see deployctl/pipeline/dblogins.py). The extensions are
        created by the admin role (the superuser of the embedded server), before the migrations run.
        """
        from psycopg import sql

        self.start()
        self.check_extensions()
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
        self._create_extensions()

    def _create_extensions(self) -> None:
        import psycopg
        from psycopg import sql

        with self.admin(self.config.name) as db:
            for extension in self.config.extensions:
                try:
                    db.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))
                except psycopg.Error as exc:
                    said = next(iter(str(exc).splitlines()), type(exc).__name__)
                    raise DeployctlError(f"could not create extension {extension}: {said}",
                                         "The admin role of deployctl:local.database_url must be allowed to "
                                         "create it (a superuser, or the extension trusted).") from None

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
        with self.admin() as db:  # an existing server (database_url) may not have the database yet
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.config.name,)).fetchone():
                return None
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


def _link_default_socket(directory: Path, port: str) -> None:
    """``.s.PGSQL.5432`` → the server's own socket: clients that name only the socket directory find it."""
    default = directory / f".s.PGSQL.{naming.POSTGRES_PORT}"
    if port == naming.POSTGRES_PORT or (default.exists() and not default.is_symlink()):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        if default.is_symlink() and os.readlink(default) == f".s.PGSQL.{port}":
            return
        default.unlink(missing_ok=True)
        default.symlink_to(f".s.PGSQL.{port}")


# Four digits, like 5432: the socket's name (.s.PGSQL.<port>) must stay as long as the one pgserver checked
# against the 107-byte limit of a unix socket path when it chose the socket directory.
_PORTS = range(6100, 8000)


def _free_port() -> int:
    import random
    import socket

    for port in random.sample(_PORTS, 50):
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise DeployctlError(f"no free port for Postgres on {LOOPBACK} between {_PORTS.start} and {_PORTS.stop - 1}",
                         "Free one of them (fifty random ones were taken), then run the command again.")


def _host_of(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    return parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]


def _port_of(url: str) -> str:
    from urllib.parse import urlsplit

    return str(urlsplit(url).port or 5432)


def _system_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None
