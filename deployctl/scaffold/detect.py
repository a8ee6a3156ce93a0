"""Everything ``deployctl init`` learns about a repository, and the report it prints about it.

Rule: detection only reads (see repo.py); what it could not tell becomes a line of the report saying what
to set by hand, never a guess written silently into a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deployctl.scaffold import apps, deps, dotenv, envvars, migrations, routes
from deployctl.scaffold.repo import Repo

SERVICE = "web"  # the service's name in the stacks (Cloud Run: <stack>-web)


@dataclass(frozen=True)
class Detection:
    name: str  # the project's name (Pulumi.yaml)
    app: apps.App | None
    deps: deps.Deps
    source: str  # the service's directory: its code and manifest (the stack's `source`)
    migrations: migrations.Migrations | None
    health: tuple[routes.Health, ...]
    env: envvars.Env
    url_scheme: str  # the scheme of a composed database URL
    unparsable: tuple[str, ...] = ()

    @property
    def workdir(self) -> str:
        return self.app.workdir if self.app else self.source

    @property
    def database(self) -> bool:
        return bool(self.env.url or self.env.parts) or self.migrations is not None

    @property
    def command(self) -> list[str]:
        """The serve command, run in ``service_workdir`` (a shell expands ``$PORT``); ``cd`` only where the
        directory the app imports from is outside the service's source, which ``workdir`` cannot name."""
        serve = self.app.serve() if self.app else "exec python -m app"
        if self.workdir == "." or self.service_workdir is not None:
            return ["sh", "-c", serve]
        return ["sh", "-c", f"cd {self.workdir} && {serve}"]

    @property
    def service_workdir(self) -> str | None:
        """The stack's ``workdir`` (relative to ``source``) for where the app imports from; None: the root."""
        return None if self.workdir == "." else under(self.workdir, self.source)

    @property
    def port(self) -> int:
        return self.app.port if self.app else apps.DEFAULT_PORT

    @property
    def placed_health(self) -> list[str]:
        return [h.path for h in self.health if h.placed]


def under(path: str, source: str) -> str | None:
    """*path* (relative to the repository root) relative to *source*, or None when it is not inside it."""
    if source == ".":
        return path
    if path == source:
        return "."
    return path.removeprefix(f"{source}/") if path.startswith(f"{source}/") else None


def detect(repo: Repo) -> Detection:
    app = apps.find(repo)
    source = _source(repo, app)
    app = apps.with_port(repo, app, source) if app else None
    dependencies = deps.detect(repo, source)
    env = dotenv.merge(envvars.scan(repo, source), *dotenv.read(repo, source))
    health = tuple(routes.find(repo, app, source, env.settings)) if app else ()
    return Detection(
        name=_project_name(repo, repo.root), app=app, deps=dependencies, source=source,
        migrations=migrations.find(repo, app), health=health, env=env,
        url_scheme=_url_scheme(app, dependencies), unparsable=tuple(repo.unparsable),
    )


def _source(repo: Repo, app: apps.App | None) -> str:
    """The nearest directory from the app's top package up that holds its manifest (pyproject.toml or
    requirements.txt): ``backend`` for backend/app/main.py with backend/pyproject.toml, ``app`` for a
    package that keeps its own requirements.txt, else where the app imports from."""
    if app is None:
        return "."
    workdir = app.workdir
    package = app.module.split(".")[0]
    top = package if workdir == "." else f"{workdir}/{package}"
    here = top if repo.is_dir(top) else workdir
    while True:
        prefix = "" if here == "." else f"{here}/"
        if repo.exists(f"{prefix}pyproject.toml") or repo.exists(f"{prefix}requirements.txt"):
            return here
        if here == ".":
            return workdir if repo.is_dir(workdir) else "."
        here = str(Path(here).parent)


def _project_name(repo: Repo, root: Path) -> str:
    config = repo.toml("pyproject.toml") or {} if repo.exists("pyproject.toml") else {}
    name = config.get("project", {}).get("name") or config.get("tool", {}).get("poetry", {}).get("name") or root.name
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    return slug or "app"


def _url_scheme(app: apps.App | None, dependencies: deps.Deps) -> str:
    if app is not None and app.framework == "django":
        return "postgres"  # dj-database-url and django-environ
    if not dependencies.has("sqlalchemy", "sqlmodel", "flask-sqlalchemy"):
        return "postgresql"  # libpq's own URL
    drivers = (("psycopg", "psycopg"), ("asyncpg", "asyncpg"), ("pg8000", "pg8000"), ("psycopg2", "psycopg2"),
               ("psycopg2-binary", "psycopg2"))
    for package, driver in drivers:  # named: SQLAlchemy's default driver is psycopg2 up to 2.0, psycopg from 2.1
        if dependencies.has(package):
            return f"postgresql+{driver}"
    return "postgresql"
