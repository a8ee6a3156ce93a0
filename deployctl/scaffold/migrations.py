"""The migration tool, the command that applies its migrations, and the Postgres extensions they create.

Django runs ``manage.py migrate``; Flask-Migrate runs ``flask db upgrade``; plain Alembic runs ``alembic
upgrade head`` from the directory of its alembic.ini (or with ``-c`` when script_location is written
relative to ``%(here)s``). Every command runs from the repository root, as the release's jobs do.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass

from deployctl.scaffold.apps import App
from deployctl.scaffold.repo import Repo, parent

# Extensions Postgres 13+ marks trusted: the database owner (the app's role) may create them itself.
TRUSTED = frozenset({
    "btree_gin", "btree_gist", "citext", "cube", "dict_int", "fuzzystrmatch", "hstore", "intarray", "isn", "lo",
    "ltree", "pgcrypto", "pg_trgm", "seg", "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time", "unaccent",
    "uuid-ossp", "plpgsql",
})
# the local target creates these as the superuser before the migrations run (targets/local/postgres.py)
PROVIDED = frozenset({"vector"})
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
    return Migrations(found.tool, found.command, found.where, found.scripts, _extensions(repo, found))


def shell_line(command: list[str]) -> str:
    """A job's argv as a person would type it: ``cd backend && alembic upgrade head``."""
    if command[:2] == ["sh", "-c"] and len(command) == 3:
        return command[2].replace("exec ", "")
    return " ".join(command)


def _django(repo: Repo, app: App) -> Migrations:
    return Migrations("Django", _in(app.workdir, "python manage.py migrate --noinput"), app.file,
                      f"{app.workdir}/*/migrations" if app.workdir != "." else "*/migrations")


def _flask_migrate(repo: Repo, app: App) -> Migrations | None:
    for rel in repo.python_files(app.workdir):
        text = repo.text(rel) or ""
        if "flask_migrate" in text and "Migrate(" in text:
            directory = re.search(r"""Migrate\([^)]*directory\s*=\s*["']([^"']+)""", text)
            scripts = _join(app.workdir, directory.group(1) if directory else "migrations")
            command = f"exec flask --app {app.target} db upgrade"
            return Migrations("Flask-Migrate", _in(app.workdir, command), rel, scripts)
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
            return Migrations("Alembic", _in(workdir, f"exec alembic -c {ini_arg} upgrade head"), ini, scripts)
        return Migrations("Alembic", _in(here, "exec alembic upgrade head"), ini, _join(here, location))
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


def _in(workdir: str, command: str) -> list[str]:
    """*command* (a shell line starting with exec) run from *workdir*, as a job's argv."""
    if workdir == ".":
        return command.removeprefix("exec ").split()
    return ["sh", "-c", f"cd {workdir} && {command}"]


def _join(directory: str, name: str) -> str:
    return name if directory in (".", "") else f"{directory}/{name}"
