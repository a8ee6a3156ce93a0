"""The local stack's Postgres: one deployctl runs (pgserver's embedded Postgres, or a Postgres installed on
this machine: providers.py says which), or an existing server (``local.database_url``).

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
import shutil
import stat
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deployctl import migration_state
from deployctl.config import Database
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.facts import POSTGRES_PORT, db_facts
from deployctl.joblog import explain
from deployctl.migration_state import MigrationState
from deployctl.pipeline import dblogins
from deployctl.targets.local import providers
from deployctl.targets.local.providers import Provider

_HBA = """# written by deployctl: superuser over the local socket only, every other role by password
local all postgres trust
local all all scram-sha-256
host all postgres 127.0.0.1/32 reject
host all all 127.0.0.1/32 scram-sha-256
"""
LOOPBACK = "127.0.0.1"
_OURS = "# written by deployctl: its own port, on the loopback address"


class LocalDatabase:
    """The server deployctl runs for the stack, or (with *admin_url*) an existing Postgres it administers."""

    def __init__(self, pgdata: Path, config: Database, admin_url: str | None = None) -> None:
        self.pgdata = pgdata
        self.config = config
        self.admin_url = admin_url
        self._socket: str | None = None
        self._port = POSTGRES_PORT
        self._provider: Provider | None = None

    def provider(self) -> Provider:
        """The Postgres that holds the stack's data, or the one chosen for it (providers.py)."""
        if self._provider is None:
            found = providers.found()
            if (self.pgdata / "PG_VERSION").is_file():
                self._provider = providers.of_data(providers.marker_of(self.pgdata), self.pgdata, found,
                                                   self.pgdata.parent.name)  # <state>/<stack>/postgres
            else:
                self._provider = providers.choose(self.config.extensions, self.config.version, found)
        return self._provider

    def shown(self) -> str:
        """What ``status`` says of the server, without starting it."""
        if self.admin_url:
            # never the URL itself: it may carry a password
            return f"external Postgres at {_host_of(self.admin_url)}:{_port_of(self.admin_url)}"
        try:
            provider = self.provider()
        except DeployctlError as exc:
            return f"no Postgres yet: {exc.message}"
        up = "running" if self.running() else "stopped"
        said = str(provider).removeprefix("the ").removeprefix("this machine's ")
        said = said if provider.kind == "embedded" else f"system {said}"
        other = f"; the stack says {self.config.version}" if provider.major != self.config.version else ""
        return f"{said} ({up}{other})"

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
        if self._adopt():
            return
        if self.provider().kind == "system":
            self._start_system(self.provider())
            return
        pgserver = _pgserver()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _unlink_dangling_socket(self.pgdata)  # pgserver would try to bind it and fail (EADDRINUSE)
        try:
            server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise DeployctlError(
                f"the embedded Postgres did not start ({type(exc).__name__}: {exc})",
                f"See its log: {self.pgdata / 'log'}",
            ) from exc
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

    def _adopt(self) -> bool:
        """Use the server already running on the stack's data when an earlier start left it as ``start`` makes it
        (ready, on its own port on 127.0.0.1, passwords enforced): most commands find it so, and reading
        postmaster.pid spares them pgserver's import and its permission walk over its binaries (as root)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            hba = (self.pgdata / "pg_hba.conf").read_text()
        except OSError:
            return False
        # postmaster.pid: pid, data directory, start time, port, socket directory, listen address, shmem, status
        if len(lines) < 8 or lines[5].strip() != LOOPBACK or lines[7].strip() != "ready" or hba != _HBA:
            return False
        if not _started_at(lines[0], lines[2]):  # a file left by a crash, its pid reused since: start it again
            return False
        self._socket, self._port = lines[4], lines[3]
        _link_default_socket(Path(self._socket), self._port)
        return True

    def _listen_on_loopback(self) -> None:
        """pgserver starts Postgres on its socket only; restart it on 127.0.0.1 too, on a port kept in the data
        directory (ALTER SYSTEM), so the next cold start by pgserver uses the same port."""
        from pgserver.utils import PostmasterInfo

        port = self._port if self._port != POSTGRES_PORT else str(_free_port())
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

    def _start_system(self, provider: Provider) -> None:
        """Run an installed Postgres on the stack's data directory, made (initdb) the first time: the same
        settings as the embedded server (its own port on 127.0.0.1, kept in postgresql.conf; _HBA)."""
        user = _system_user()
        if user is not None:
            _ensure_user(user)
        fresh = not (self.pgdata / "PG_VERSION").is_file()
        if fresh:
            shutil.rmtree(self.pgdata, ignore_errors=True)  # initdb wants it empty (a half-made one is not data)
            self.pgdata.mkdir(parents=True)
            if user is not None:
                _reachable_by_others(self.pgdata)
                shutil.chown(self.pgdata, user, user)
            self.pgdata.chmod(0o700)
            providers.write_marker(self.pgdata, provider)  # first: data without a record would be pgserver's
            _pg(provider, "initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                "--locale=C", "--no-sync", what="create the database cluster")
        if (self.pgdata / "pg_hba.conf").read_text() != _HBA:  # checked every start: an initdb cut short
            (self.pgdata / "pg_hba.conf").write_text(_HBA)
        conf = self.pgdata / "postgresql.conf"
        if _OURS not in conf.read_text():
            with open(conf, "a") as settings:  # the last setting of a name wins
                settings.write(f"\n{_OURS}\nport = {_free_port()}\nlisten_addresses = '{LOOPBACK}'\n")
        socket_dir = _socket_dir(self.pgdata, user)
        if not self.running():
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)  # a stale one (its server is gone)
            _pg(provider, "pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.pgdata / "log"),
                "-o", f"-k {socket_dir}", "start", what=f"start {provider}")
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        self._socket, self._port = lines[4], lines[3]  # postmaster.pid: pid, data, start, port, socket dir…
        _link_default_socket(Path(self._socket), self._port)

    def facts(self) -> dict[str, str]:
        """DB_FACTS of this server: TCP on 127.0.0.1 and its port, or the socket directory (``{db_socket}``)."""
        self.start()
        assert self._socket is not None
        if self.admin_url:
            return db_facts(user=self.config.user, name=self.config.name, connection="local",
                                   socket=self._socket, port=_port_of(self.admin_url))
        return db_facts(user=self.config.user, name=self.config.name, connection="local",
                               socket=self._socket, port=self._port, host=LOOPBACK)

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres", missing_ok: bool = False) -> Iterator[Any]:
        """An autocommit connection as the admin role to *dbname*; None if it does not exist and *missing_ok*."""
        import psycopg

        assert self._socket is not None
        try:
            if self.admin_url:
                conn = psycopg.connect(self.admin_url, dbname=dbname, autocommit=True, connect_timeout=5)
            else:
                conn = psycopg.connect(host=self._socket, port=self._port, user="postgres", dbname=dbname,
                                       autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if missing_ok and f'database "{dbname}" does not exist' in str(exc):
                yield None
                return
            where = "deployctl:local.database_url" if self.admin_url else f"the stack's Postgres ({self.pgdata})"
            raise DeployctlError(f"cannot connect to {where}: {type(exc).__name__}",
                                 "Check that the server runs and the URL's user may create roles.") from None
        with conn:
            yield conn

    def check_extensions(self) -> None:
        """Refuse, in one line and before any change, a stack that lists an extension its Postgres lacks."""
        if not self.admin_url:
            provider = self.provider()  # a new stack's provider has them all, or choosing it said which not
            if not set(self.config.extensions) <= provider.extensions:
                raise providers.missing(self.config.extensions, self.config.version, providers.found(), provider,
                                        self.pgdata.parent.name)
            return
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
        it = "it" if len(missing) == 1 else "them"
        noun = "extension" if len(missing) == 1 else "extensions"
        raise PreconditionError(f"the Postgres at deployctl:local.database_url ({version}) has no {noun} {names}; "
                                f"install {it} there, or point deployctl:local.database_url at a Postgres that has "
                                f"{it}",
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

    def lost(self) -> str | None:
        """Read-only: what is gone when the stack's data is (its data directory, or its database on a
        running server); None when the data is there, or cannot be looked at without starting the server."""
        if not self.admin_url and not (self.pgdata / "PG_VERSION").is_file():
            return "data directory"
        if self.running() and not self._database_exists():
            return "database"
        return None

    def _database_exists(self) -> bool:
        self.start()
        with self.admin() as db:  # an existing server (database_url) may not have the database yet
            return bool(db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.config.name,)).fetchone())

    def migration_state(self) -> MigrationState | None:
        """What the stack's database says about its migrations (deployctl.migration_state); None before the
        server or the database exists."""
        if not self.running():
            return None
        import psycopg

        self.start()
        try:  # one connection: an existing server (database_url) may not have the database yet
            with self.admin(self.config.name, missing_ok=True) as db:
                return migration_state.read(db) if db else None
        except psycopg.Error:
            return None

    def stop(self) -> None:
        if self.admin_url or not self.running():
            return
        if self.provider().kind == "system":
            _pg(self.provider(), "pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop", check=False)
            self._socket = None
            short = _short_socket_dir(self.pgdata)
            if short is not None:  # only the link to the socket is left in it
                shutil.rmtree(short, ignore_errors=True)
            return
        _commands = _pgserver()._commands
        user = _system_user()
        with contextlib.suppress(subprocess.CalledProcessError):
            _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
        self._socket = None
        _unlink_dangling_socket(self.pgdata)  # the link to the socket the server just removed


def _started_at(pid: str, started: str) -> bool:
    """Whether process *pid* runs and started at the epoch second *started* (postmaster.pid's two lines)."""
    import psutil

    try:
        return abs(psutil.Process(int(pid)).create_time() - int(started)) < 2
    except (ValueError, psutil.Error):
        return False


def _pg(provider: Provider, exe: str, *args: str, what: str = "", check: bool = True) -> None:
    """Run one of the provider's programs as the server's user (never root: initdb and postgres refuse it)."""
    user = _system_user()
    as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}  # not root's group
    try:
        out = subprocess.run([str(provider.bindir / exe), *args], capture_output=True, text=True, timeout=90,
                             cwd="/", check=False, **as_user)
    except (OSError, subprocess.SubprocessError) as exc:
        said = type(exc).__name__
    else:
        if out.returncode == 0 or not check:
            return
        said = explain(out.stderr or out.stdout) or f"exit code {out.returncode}"
    raise DeployctlError(f"could not {what or exe} ({provider}): {said}",
                         "See the server's log in the stack's postgres/ directory (log).")


def _ensure_user(name: str) -> None:
    """The system user that runs Postgres for root (the one pgserver makes for the embedded server)."""
    if not _user_exists(name):
        out = subprocess.run(["useradd", "-s", "/bin/bash", name], capture_output=True, text=True, check=False)
        if out.returncode != 0 and not _user_exists(name):  # not made meanwhile by another deployctl
            raise DeployctlError(f"could not create the system user {name} that runs Postgres: "
                                 f"{explain(out.stderr) or out.returncode}",
                                 "Postgres does not run as root: create the user, or run deployctl as another "
                                 "user.") from None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _reachable_by_others(path: Path) -> None:
    """Let the server's user enter every directory above *path* (search permission only)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _short_socket_dir(pgdata: Path) -> Path | None:
    """None when the data directory can hold the socket; else, as a socket's path in it would pass the
    107-byte limit of unix sockets, a short directory of its own under the temporary directory."""
    if len(str(pgdata / ".s.PGSQL.00000.lock")) < 100:
        return None
    import hashlib
    import tempfile

    return Path(tempfile.gettempdir()) / f"deployctl-pg-{hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]}"


def _socket_dir(pgdata: Path, user: str | None) -> Path:
    """Where the server puts its socket (made again after a reboot empties the temporary directory)."""
    short = _short_socket_dir(pgdata)
    if short is None:
        return pgdata
    short.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        shutil.chown(short, user, user)
    return short


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


def _unlink_dangling_socket(directory: Path) -> None:
    """Remove the ``.s.PGSQL.5432`` link ``_link_default_socket`` made once the socket it points to is gone:
    pgserver takes a dangling link for a free socket path, binds it, and fails with EADDRINUSE."""
    default = directory / f".s.PGSQL.{POSTGRES_PORT}"
    if default.is_symlink() and not default.exists():
        default.unlink(missing_ok=True)


def _link_default_socket(directory: Path, port: str) -> None:
    """``.s.PGSQL.5432`` → the server's own socket: clients that name only the socket directory find it."""
    default = directory / f".s.PGSQL.{POSTGRES_PORT}"
    if port == POSTGRES_PORT or (default.exists() and not default.is_symlink()):
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
