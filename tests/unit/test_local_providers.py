"""Which Postgres the local target runs (deployctl/targets/local/providers.py): chosen by the stack's extensions
and version, kept by the data it made, and one line when none fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployctl.errors import PreconditionError
from deployctl.targets.local import providers
from deployctl.targets.local.providers import Provider

CONTRIB = frozenset({"plpgsql", "uuid-ossp", "pgcrypto", "citext", "pg_trgm", "hstore", "btree_gist"})
EMBEDDED = Provider("embedded", Path("/site/pgserver/pginstall/bin"), "16.2", frozenset({"plpgsql", "vector"}))
DEBIAN_15 = Provider("system", Path("/usr/lib/postgresql/15/bin"), "15.20", CONTRIB | {"vector"})
DEBIAN_17 = Provider("system", Path("/usr/lib/postgresql/17/bin"), "17.6", CONTRIB)
HERE = (EMBEDDED, DEBIAN_15, DEBIAN_17)


@pytest.mark.parametrize(("extensions", "version", "chosen"), [
    ([], 16, EMBEDDED),  # the stack's major
    (["vector"], 16, EMBEDDED),
    (["vector"], 15, DEBIAN_15),  # the stack's major wins over the zero-install one
    (["uuid-ossp"], 16, DEBIAN_15),  # nearest major with the extension; 15 and 17 tie, the older one first
    (["uuid-ossp"], 17, DEBIAN_17),
    (["uuid-ossp", "vector"], 17, DEBIAN_15),  # only 15 has both
])
def test_the_stacks_extensions_then_its_major_choose_the_server(extensions, version, chosen):
    assert providers.choose(extensions, version, HERE) == chosen


def test_an_extension_no_server_has_is_one_line_naming_it_the_servers_and_the_package():
    with pytest.raises(PreconditionError) as raised:
        providers.choose(["vector", "postgis"], 16, (EMBEDDED, DEBIAN_15))
    assert raised.value.message == (
        "no Postgres on this machine has extension postgis (looked at: the embedded Postgres 16.2 (pgserver); this "
        "machine's Postgres 15.20 (/usr/lib/postgresql/15)); install it (apt-get install postgresql-15-postgis-3) or "
        "set deployctl:local.database_url to a Postgres that has it (docs/local.md, Extensions)")
    with pytest.raises(PreconditionError) as raised:
        providers.choose(["uuid-ossp"], 16, (EMBEDDED,))  # no system Postgres at all: the server and contrib
    assert "install it (apt-get install postgresql-16 postgresql-contrib) or set " in raised.value.message


def test_data_keeps_the_server_that_made_it(tmp_path):
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    assert providers.of_data(providers.marker_of(pgdata), pgdata, HERE) == EMBEDDED  # no record: an older pgserver
    (pgdata / "PG_VERSION").write_text("15\n")
    providers.write_marker(pgdata, DEBIAN_15)
    assert json.loads(providers.marker_of(pgdata).read_text())["kind"] == "system"
    assert providers.of_data(providers.marker_of(pgdata), pgdata, HERE) == DEBIAN_15
    with pytest.raises(PreconditionError) as raised:
        providers.of_data(providers.marker_of(pgdata), pgdata, (EMBEDDED,), "local")
    assert raised.value.message.endswith("was made by this machine's Postgres (/usr/lib/postgresql/15) 15, which is "
                                         "no longer on this machine")
    assert raised.value.hint == "Install Postgres 15 again, or delete the data: deployctl down local --purge."


def test_the_data_servers_missing_extension_says_how_to_move():
    said = providers.missing(["uuid-ossp"], 16, HERE, EMBEDDED, "local").message
    assert said == ("the embedded Postgres 16.2 (pgserver) has no extension uuid-ossp; this machine's Postgres 15.20 "
                    "(/usr/lib/postgresql/15) has it but cannot open this stack's data (Postgres 16): delete the "
                    "stack's data (deployctl down local --purge) and release again")
    said = providers.missing(["vector"], 17, HERE, DEBIAN_17, "local").message
    assert said == ("this machine's Postgres 17.6 (/usr/lib/postgresql/17) has no extension vector; install it "
                    "(apt-get install postgresql-17-pgvector), or move: the embedded Postgres 16.2 (pgserver) has it "
                    "but cannot open this data (Postgres 17): delete the stack's data (deployctl down local --purge) "
                    "and release again")
    said = providers.missing(["postgis"], 15, HERE, DEBIAN_15, "local").message
    assert said.startswith("this machine's Postgres 15.20 (/usr/lib/postgresql/15) has no extension postgis; install "
                           "it (apt-get install postgresql-15-postgis-3), or set deployctl:local.database_url")


def test_a_server_is_read_from_its_files_without_starting_it(tmp_path):
    bindir = tmp_path / "pg" / "bin"
    bindir.mkdir(parents=True)
    for exe in ("postgres", "initdb", "pg_ctl"):
        (bindir / exe).write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 17.6'\n")
        (bindir / exe).chmod(0o755)
    extension = tmp_path / "pg" / "share" / "postgresql" / "extension"
    extension.mkdir(parents=True)
    for name in ("plpgsql", "citext", "vector"):
        (extension / f"{name}.control").write_text("")
    assert providers._read("system", bindir) == Provider("system", bindir, "17.6",
                                                         frozenset({"plpgsql", "citext", "vector"}))
    (extension / "plpgsql.control").unlink()  # not a server's extension directory
    assert providers._read("system", bindir) is None


# -- a running server is adopted from postmaster.pid, without pgserver -------------------------------------
def _postmaster(pgdata: Path, pid: int, started: float, address: str = "127.0.0.1", hba: str | None = None) -> None:
    from deployctl.targets.local import postgres

    pgdata.mkdir(exist_ok=True)
    (pgdata / "pg_hba.conf").write_text(postgres._HBA if hba is None else hba)
    (pgdata / "postmaster.pid").write_text(
        f"{pid}\n{pgdata}\n{int(started)}\n7123\n{pgdata}\n{address}\n  1  2\nready   \n")


@pytest.mark.parametrize(("case", "adopted"), [
    ("as start leaves it", True),
    ("a reused pid", False),  # postmaster.pid left by a crash: another process has the pid now
    ("socket only", False),  # pgserver's own start: not yet on 127.0.0.1
    ("another pg_hba.conf", False),  # passwords not enforced yet
])
def test_a_running_server_is_adopted_only_as_start_leaves_it(tmp_path: Path, case: str, adopted: bool) -> None:
    import os

    import psutil

    from deployctl.config import Database
    from deployctl.targets.local.postgres import LocalDatabase

    me = psutil.Process()
    started = me.create_time() - (3600 if case == "a reused pid" else 0)
    _postmaster(tmp_path / "pgdata", os.getpid(), started, "" if case == "socket only" else "127.0.0.1",
                "local all all trust\n" if case == "another pg_hba.conf" else None)
    db = LocalDatabase(tmp_path / "pgdata", Database())
    assert db._adopt() is adopted
    if adopted:
        assert db.facts()["db_port"] == "7123" and (tmp_path / "pgdata" / ".s.PGSQL.5432").is_symlink()
