"""The migration tool, the command that applies its migrations, and the Postgres extensions they create.

Django runs ``manage.py migrate``; Flask-Migrate runs ``flask db upgrade``; plain Alembic runs ``alembic
upgrade head`` from the directory of its alembic.ini (or with ``-c`` when script_location is written
relative to ``%(here)s``). Each command is plain argv plus the directory it runs from (``workdir``, relative
to the repository root): the stacks turn that into the job's or the service's ``workdir``.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, replace

from deployctl.scaffold.apps import App
from deployctl.scaffold.repo import Repo, parent

# Extensions Postgres 13+ marks trusted: the database owner (the app's role) may create them itself.
TRUSTED = frozenset({
    "btree_gin", "btree_gist", "citext", "cube", "dict_int", "fuzzystrmatch", "hstore", "intarray", "isn", "lo",
    "ltree", "pgcrypto", "pg_trgm", "seg", "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time", "unaccent",
    "uuid-ossp", "plpgsql",
})
# what the local target's default Postgres (pgserver 0.1.4, PG 16.2) has; others need deployctl:local.database_url
EMBEDDED = frozenset({"plpgsql", "vector"})
_SQL = re.compile(r"""CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?["'\\]*([\w-]+)""", re.I)
_DJANGO = {"HStoreExtension": "hstore", "TrigramExtension": "pg_trgm", "CryptoExtension": "pgcrypto",
           "UnaccentExtension": "unaccent", "BtreeGinExtension": "btree_gin", "BtreeGistExtension": "btree_gist",
           "CITextExtension": "citext", "BloomExtension": "bloom"}
_DJANGO_OP = re.compile(r"""\b(?:CreateExtension\(\s*(?:name\s*=\s*)?["']([\w-]+)["']|(\w+Extension)\(\s*\))""")


@dataclass(frozen=True)
class Migrations:
    tool: str  # Alembic, Django, Flask-Migrate
    command: list[str]
    where: str  # the file that told (alembic.ini, manage.py, the module that makes Migrate(app))
    scripts: str  # the directory of the migration scripts
    extensions: tuple[str, ...] = ()
    workdir: str = "."  # where the command runs, relative to the repository root


def find(repo: Repo, app: App | None) -> Migrations | None:
    found: Migrations | None
    if app is not None and app.framework == "django":
        found = _django(repo, app)
    elif app is not None and app.framework == "flask" and (flask := _flask_migrate(repo, app)) is not None:
        found = flask
    else:
        found = _alembic(repo, app)
    if found is None:
        return None
    return replace(found, extensions=_extensions(repo, found))


def shell_line(command: list[str], workdir: str = ".") -> str:
    """A command as a person would type it: ``alembic upgrade head`` (in ``backend/``)."""
    shell = command[:2] == ["sh", "-c"] and len(command) == 3
    line = command[2].replace("exec ", "") if shell else " ".join(command)
    return line if workdir == "." else f"{line} (in {workdir}/)"


def _django(repo: Repo, app: App) -> Migrations:
    return Migrations("Django", ["python", "manage.py", "migrate", "--noinput"], app.file,
                      f"{app.workdir}/*/migrations" if app.workdir != "." else "*/migrations", workdir=app.workdir)


def _flask_migrate(repo: Repo, app: App) -> Migrations | None:
    for rel in repo.python_files(app.workdir):
        text = repo.text(rel) or ""
        if "flask_migrate" in text and "Migrate(" in text:
            directory = re.search(r"""Migrate\([^)]*directory\s*=\s*["']([^"']+)""", text)
            scripts = _join(app.workdir, directory.group(1) if directory else "migrations")
            command = ["flask", "--app", app.target, "db", "upgrade"]
            return Migrations("Flask-Migrate", command, rel, scripts, workdir=app.workdir)
    return None


def _alembic(repo: Repo, app: App | None) -> Migrations | None:
    inis = repo.named("alembic.ini")
    if app is not None:  # the service's own first
        inis.sort(key=lambda f: not (app.workdir == "." or f.startswith(f"{app.workdir}/")))
    for ini in inis:
        location = _script_location(repo, ini)
        if location is None:
            continue
        here = parent(ini)
        if "%(here)s" in location:  # absolute from the ini: run from where the app imports, naming the ini
            scripts = _join(here, location.replace("%(here)s", "").strip("/") or ".")
            workdir = app.workdir if app else "."
            ini_arg = ini if workdir == "." else ini.removeprefix(f"{workdir}/")
            return Migrations("Alembic", ["alembic", "-c", ini_arg, "upgrade", "head"], ini, scripts, workdir=workdir)
        return Migrations("Alembic", ["alembic", "upgrade", "head"], ini, _join(here, location), workdir=here)
    return None


def _script_location(repo: Repo, ini: str) -> str | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(repo.text(ini) or "")
    except configparser.Error:
        return None
    return parser.get("alembic", "script_location", fallback=None)


def _extensions(repo: Repo, found: Migrations) -> tuple[str, ...]:
    pattern = found.scripts.replace("*", "")
    names: list[str] = []
    for rel in repo.files:
        if not rel.endswith(".py") or not _under(rel, found.scripts, pattern):
            continue
        text = repo.text(rel) or ""
        if "EXTENSION" not in text.upper():
            continue
        names += [m.lower() for m in _SQL.findall(text)]
        for create, cls in _DJANGO_OP.findall(text):
            names.append(create or _DJANGO.get(cls, ""))
    return tuple(dict.fromkeys(n for n in names if n))


def _under(rel: str, scripts: str, pattern: str) -> bool:
    if "*" in scripts:
        head, _, tail = scripts.partition("*")
        return rel.startswith(head) and f"{tail}/" in rel[len(head):]
    return scripts == "." or rel.startswith(f"{pattern.rstrip('/')}/")


def _join(directory: str, name: str) -> str:
    return name if directory in (".", "") else f"{directory}/{name}"
