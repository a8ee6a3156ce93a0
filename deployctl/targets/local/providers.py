"""Which Postgres the local target runs: pgserver's embedded one, or a Postgres installed on this machine.

Rules:
- The providers are pgserver's embedded server (a PyPI wheel: PG 16.2 with plpgsql and vector) and every
  installed server found in Debian's layout (``/usr/lib/postgresql/<major>/bin``) or through ``pg_config``
  on PATH. What a provider offers is read from its files (``postgres -V``, the ``.control`` files of its
  extension directory): nothing is started to choose.
- A stack gets a provider that has every extension in ``database.extensions``; among those, the one whose
  major version is the stack's ``database.version``, else the nearest major, the embedded one on a tie.
  So the sample app (16, vector) runs on the embedded server with nothing installed, and an app that needs
  contrib runs on the system Postgres.
- Once a stack has data, the provider that made it keeps it (a data directory opens only with its own
  major version); the choice is recorded beside the data (``postgres.json``).
- None that fits is one line naming the missing extensions, the servers looked at and the install command.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deployctl.errors import PreconditionError

Kind = Literal["embedded", "system"]
DEBIAN = Path("/usr/lib/postgresql")  # Debian's and Ubuntu's layout: one directory per installed major
_VERSION = re.compile(r"\(PostgreSQL\) (\d+(?:\.\d+)?)")
# the extensions Postgres ships in contrib (Debian: in postgresql-<major> itself, or postgresql-contrib)
CONTRIB = frozenset({
    "adminpack", "amcheck", "autoinc", "bloom", "btree_gin", "btree_gist", "citext", "cube", "dblink", "dict_int",
    "dict_xsyn", "earthdistance", "file_fdw", "fuzzystrmatch", "hstore", "insert_username", "intagg", "intarray",
    "isn", "lo", "ltree", "moddatetime", "old_snapshot", "pageinspect", "pg_buffercache", "pg_freespacemap",
    "pg_prewarm", "pg_stat_statements", "pg_surgery", "pg_trgm", "pg_visibility", "pg_walinspect", "pgcrypto",
    "pgrowlocks", "pgstattuple", "postgres_fdw", "refint", "seg", "sslinfo", "tablefunc", "tcn", "tsm_system_rows",
    "tsm_system_time", "unaccent", "uuid-ossp", "xml2",
})
# Debian package names of common extensions outside contrib (postgresql-<major>-<name> otherwise)
_PACKAGES = {"vector": "pgvector", "postgis": "postgis-3", "postgis_topology": "postgis-3", "pg_cron": "cron",
             "timescaledb": "timescaledb", "pg_partman": "partman", "pgaudit": "pgaudit", "hypopg": "hypopg"}


@dataclass(frozen=True)
class Provider:
    kind: Kind
    bindir: Path
    version: str  # "16.2"
    extensions: frozenset[str]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def __str__(self) -> str:
        if self.kind == "embedded":
            return f"the embedded Postgres {self.version} (pgserver)"
        return f"this machine's Postgres {self.version} ({self.bindir.parent})"

    def record(self) -> dict[str, str]:
        return {"kind": self.kind, "bindir": str(self.bindir), "version": self.version}


@functools.cache
def found() -> tuple[Provider, ...]:
    """Every Postgres this machine can run: the embedded one first, then the installed ones by major."""
    providers = []
    embedded = _embedded_bindir()
    if embedded is not None:
        provider = _read("embedded", embedded)
        if provider is not None:
            providers.append(provider)
    seen: set[Path] = set()
    for bindir in _system_bindirs():
        if bindir.resolve() in seen:
            continue
        seen.add(bindir.resolve())
        provider = _read("system", bindir)
        if provider is not None:
            providers.append(provider)
    return tuple(providers)


def choose(extensions: list[str], version: int, providers: tuple[Provider, ...]) -> Provider:
    """The provider for a new stack (see the module's rules); PreconditionError naming what is missing."""
    fits = [p for p in providers if set(extensions) <= p.extensions]
    if fits:
        return min(fits, key=lambda p: _rank(p, version))
    raise missing(extensions, version, providers)


def of_data(marker: Path, pgdata: Path, providers: tuple[Provider, ...], stack: str = "STACK") -> Provider:
    """The provider that made the data in *pgdata* (recorded in *marker*; data without a record is pgserver's,
    as an older deployctl made it)."""
    recorded = json.loads(marker.read_text()) if marker.is_file() else {"kind": "embedded"}
    major = (pgdata / "PG_VERSION").read_text().strip()
    same = [p for p in providers if p.kind == recorded["kind"] and str(p.major) == major]
    same.sort(key=lambda p: str(p.bindir) != recorded.get("bindir"))
    if same:
        return same[0]
    made = "the embedded Postgres (pgserver)" if recorded["kind"] == "embedded" else \
        f"this machine's Postgres ({Path(recorded.get('bindir', '?')).parent})"
    raise PreconditionError(f"the stack's database ({pgdata}) was made by {made} {major}, which is no longer on this "
                            "machine",
                            f"Install Postgres {major} again, or delete the data: deployctl down {stack} --purge.")


def missing(extensions: list[str], version: int, providers: tuple[Provider, ...],
            data: Provider | None = None, stack: str = "STACK") -> PreconditionError:
    """One line: which extensions the stack's Postgres (*data*: the one that holds its data; else any here)
    lacks, and what to do: the install command, moving the data, or ``local.database_url``."""
    candidates = [data] if data is not None else list(providers)
    best = min(candidates, key=lambda p: (len(set(extensions) - p.extensions), _rank(p, version)), default=None)
    lacking = [e for e in extensions if best is None or e not in best.extensions]
    names, it = ", ".join(lacking), "it" if len(lacking) == 1 else "them"
    noun = "extension" if len(lacking) == 1 else "extensions"
    system = [p for p in providers if p.kind == "system"]
    install = install_command(lacking, max((p.major for p in system), default=version), bool(system))
    url = f"set deployctl:local.database_url to a Postgres that has {it} (docs/local.md, Extensions)"
    if data is None:
        looked = "; ".join(str(p) for p in providers) or "no Postgres at all"
        said = f"no Postgres on this machine has {noun} {names} (looked at: {looked}); install {it} ({install})"
        return PreconditionError(f"{said} or {url}",
                                 "Nothing was changed. deployctl:database.extensions lists what the stack needs.")
    said = f"{data} has no {noun} {names}"
    others = sorted((p for p in providers if p != data and set(extensions) <= p.extensions),
                    key=lambda p: _rank(p, version))
    move = f"delete the stack's data (deployctl down {stack} --purge) and release again"
    if data.kind == "system":
        said += f"; install {it} ({install_command(lacking, data.major, True)})"
        if others:
            said += f", or move: {others[0]} has {it} but cannot open this data (Postgres {data.major}): {move}"
        else:
            said += f", or {url}"
    elif others:
        said += f"; {others[0]} has {it} but cannot open this stack's data (Postgres {data.major}): {move}"
    else:
        said += f"; install a Postgres that has {it} ({install}), then {move}, or {url}"
    return PreconditionError(said, "Nothing was changed. deployctl:database.extensions lists what the stack needs; "
                                   "docs/local.md, Extensions.")


def install_command(extensions: list[str], major: int | str, have_system: bool) -> str:
    """The apt-get line that brings *extensions* to Debian's Postgres *major* (and the server, if none)."""
    packages = [] if have_system else [f"postgresql-{major}"]
    for name in extensions:
        package = "postgresql-contrib" if name in CONTRIB else f"postgresql-{major}-{_PACKAGES.get(name, name)}"
        if package not in packages:
            packages.append(package)
    return "apt-get install " + " ".join(packages)


def _rank(p: Provider, version: int) -> tuple[bool, int, bool]:
    return p.major != version, abs(p.major - version), p.kind != "embedded"


def _embedded_bindir() -> Path | None:
    spec = importlib.util.find_spec("pgserver")  # where it is, without importing it (and its dependencies)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_bindirs() -> list[Path]:
    bindirs = sorted((d for d in DEBIAN.glob("*/bin") if d.parent.name.isdigit()),
                     key=lambda d: int(d.parent.name), reverse=True) if DEBIAN.is_dir() else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = _output([pg_config, "--bindir"])
        if out:
            bindirs.append(Path(out))
    return [d for d in bindirs if all((d / exe).is_file() for exe in ("postgres", "initdb", "pg_ctl"))]


def _read(kind: Kind, bindir: Path) -> Provider | None:
    said = _output([str(bindir / "postgres"), "-V"])
    match = _VERSION.search(said or "")
    if match is None:
        return None
    version = match.group(1)
    major = version.split(".")[0]
    shares = [bindir.parent / "share" / "postgresql", bindir.parent / "share"]
    sharedir = _output([str(bindir / "pg_config"), "--sharedir"]) if (bindir / "pg_config").is_file() else None
    if sharedir:
        shares.insert(0, Path(sharedir))
    if bindir.parent.parent == DEBIAN:
        shares.insert(0, Path("/usr/share/postgresql") / major)
    extension_dir = next((s / "extension" for s in shares if (s / "extension" / "plpgsql.control").is_file()), None)
    if extension_dir is None:
        return None
    names = frozenset(p.name.removesuffix(".control") for p in extension_dir.glob("*.control"))
    return Provider(kind, bindir, version, names)


def _output(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def marker_of(pgdata: Path) -> Path:
    """Where the provider of *pgdata* is recorded: beside it (Postgres keeps its data directory to itself)."""
    return pgdata.with_name(f"{pgdata.name}.json")


def write_marker(pgdata: Path, provider: Provider) -> None:
    marker_of(pgdata).write_text(json.dumps(provider.record()))
