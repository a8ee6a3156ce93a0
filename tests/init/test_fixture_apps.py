"""``deployctl init --yes`` on four repositories shaped like real projects: the exact report, the files
written, stacks that load and plan offline, a Dockerfile whose COPY sources exist and that hadolint
accepts, and a second run that overwrites nothing."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployctl import config
from tests.init.conftest import WRITTEN, copy_sources, report

GCP = ("gcp:project: unknown: set your project id (and gcp:region, now europe-central2) in "
       "stacks/Pulumi.staging.yaml and stacks/Pulumi.production.yaml (written as change-me-staging, "
       "change-me-production)")
TRIGGER = ("gcp.trigger.repository: unknown: set the Cloud Build repository the trigger watches in both stacks "
           "(gcloud builds repositories list --connection=CONNECTION)")
LISTED = "(deployctl:database.extensions: created before migrate on the local target; by the migrations on Cloud SQL)"


def lacks(name: str) -> str:
    return (f"extension {name}: the local target's embedded Postgres (pgserver) lacks it: `deployctl up local` runs "
            "this machine's Postgres, which must have it (Debian: apt-get install postgresql-contrib), or set "
            "deployctl:local.database_url (docs/local.md, Extensions)")

EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "fastapi-uv": ([
        "dependencies: uv (uv.lock, workspace member app); service in backend/",
        "framework: FastAPI (backend/app/main.py: app)",
        "command: uvicorn app.main:app from backend/, port 8000 (uvicorn's default); listens on $PORT",
        "python: 3.12 (.python-version)",
        "migrations: Alembic (backend/alembic.ini, scripts in backend/app/alembic): alembic upgrade head (in backend/)",
        f"extensions: uuid-ossp {LISTED}",
        "health: /api/v1/utils/health-check/ (probes and smoke checks)",
        "database: POSTGRES_SERVER={db_host}, POSTGRES_PORT={db_port}, POSTGRES_USER={db_user}, "
        "POSTGRES_DB={db_name} (separate variables, env); POSTGRES_PASSWORD from the secret DB_PASSWORD",
        "secrets: FIRST_SUPERUSER_PASSWORD, SECRET_KEY (generated)",
    ], [
        GCP,
        TRIGGER,
        lacks("uuid-ossp"),
        "POSTGRES_SERVER: {db_host} is 127.0.0.1 locally but the Cloud SQL socket directory on Cloud Run: the app "
        "must pass it to the driver as host=, not build host:port into a URL",
        "PROJECT_NAME: required by backend/app/core/config.py (no default): set it under deployctl:services.web.env",
    ]),
    "django-pip": ([
        "dependencies: pip (requirements.txt); service in the repository root",
        "framework: Django (manage.py: settings mysite.settings)",
        "command: gunicorn mysite.wsgi:application, port 8000 (gunicorn's default); listens on $PORT",
        "python: 3.12 (default)",
        "migrations: Django (manage.py, scripts in */migrations): python manage.py migrate --noinput",
        f"extensions: pg_trgm {LISTED}",
        "health: /health/ (probes and smoke checks)",
        "database: DATABASE_URL (one URL): a composed secret, postgres://…?host=<socket>",
        "secrets: DJANGO_SECRET_KEY (generated)",
    ], [
        "static files: the image does not run collectstatic (settings must import without the service's "
        "variables): add it to Dockerfile.cloudrun if the service serves its static files",
        GCP,
        TRIGGER,
        lacks("pg_trgm"),
        "EMAIL_HOST_PASSWORD: read with a default, not wired: add it to deployctl:secrets and "
        "deployctl:services.web.secrets if needed",
        "DJANGO_ALLOWED_HOSTS: required by mysite/settings.py (no default): set it under deployctl:services.web.env",
    ]),
    "flask-poetry": ([
        "dependencies: Poetry (poetry.lock); service in the repository root",
        "framework: Flask (flaskr/__init__.py: create_app())",
        "command: gunicorn flaskr:create_app, port 8000 (gunicorn's default); listens on $PORT",
        "python: 3.12 (default)",
        "migrations: Flask-Migrate (flaskr/extensions.py, scripts in migrations): "
        "flask --app flaskr:create_app db upgrade",
        f"extensions: citext {LISTED}",
        "health: /_/readyz, /_/livez (probes and smoke checks)",
        "database: DATABASE_URL (one URL): a composed secret, postgresql+psycopg2://…?host=<socket>",
        "secrets: SECRET_KEY (generated)",
    ], [
        GCP,
        TRIGGER,
        lacks("citext"),
        "MAIL_API_KEY: read with a default, not wired: add it to deployctl:secrets and "
        "deployctl:services.web.secrets if needed",
    ]),
    "starlette-pep621": ([
        "dependencies: PEP 621 without a lock (pyproject.toml); service in the repository root",
        "framework: Starlette (src/hello/app.py: app)",
        "command: uvicorn hello.app:app from src/, port 8080 (src/hello/__main__.py); listens on $PORT",
        "python: 3.12 (requires-python >=3.11)",
        "health: /healthz, /api/ping (probes and smoke checks)",
        "secrets: QUOTES_API_TOKEN (provided: you set them)",
    ], [
        GCP,
        TRIGGER,
        "migrations: no Alembic, Django or Flask-Migrate migrations found: deployctl:jobs.migrate is null; set its "
        "command if the service has migrations",
        "database: the service reads no database variables: deployctl:database is null; add one (and a "
        "DATABASE_URL composed secret) if it needs Postgres",
        "QUOTES_API_TOKEN: a provided secret: deployctl secrets set STACK QUOTES_API_TOKEN before the first release",
    ]),
}
FIXTURE_NAMES = sorted(EXPECTED)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_init_reports_what_it_detected_and_writes_every_file(byo, run_cli, name):
    repo = byo(name)
    before = {p.relative_to(repo) for p in repo.rglob("*")}
    result = run_cli(["init", "--yes"], repo)
    assert result.exit_code == 0, result.output
    assert report(result.stdout) == EXPECTED[name]
    assert [line for line in result.stdout.splitlines() if line.startswith("wrote ")] == [f"wrote {f}" for f in WRITTEN]
    assert "skipped" not in result.stdout
    after = {p.relative_to(repo) for p in repo.rglob("*") if p.is_file()}
    assert {Path(f) for f in WRITTEN} == after - before


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_the_stacks_load_and_plan_staging_offline(byo, run_cli, name):
    repo = byo(name)
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    stacks = {s: config.load(s, repo) for s in ("local", "staging", "production")}
    assert [s.target for s in stacks.values()] == ["local", "gcp", "gcp"]
    assert stacks["production"].database is None or stacks["production"].database.deletion_protection
    plan = run_cli(["plan", "staging"], repo)
    assert plan.exit_code == 0, plan.output
    assert "All mandatory policy rules pass." in plan.stdout
    assert run_cli(["audit", "production"], repo).exit_code == 0


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_copy_source_exists_and_is_in_the_build_context(byo, run_cli, name):
    repo = byo(name)
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    sources = copy_sources((repo / "Dockerfile.cloudrun").read_text())
    assert sources
    ignored = [p for p in (repo / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    for source in sources:
        assert (repo / source).exists(), source
        assert not any(fnmatch.fnmatch(source.rstrip("/"), p) for p in ignored), source


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_the_dockerfile_is_hadolint_clean_and_runs_the_stack_command(byo, run_cli, name):
    repo = byo(name)
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    dockerfile = repo / "Dockerfile.cloudrun"
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run([str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout == "", out.stdout
    text = dockerfile.read_text()
    command = config.load("staging", repo).services["web"].command
    assert json.loads(text.splitlines()[-1].removeprefix("CMD ")) == command  # exec form, the stack's command
    assert "USER 10001" in text and "ENV PATH=/opt/venv/bin:$PATH" in text


def test_each_dockerfile_installs_the_way_its_tooling_does(byo, run_cli):
    installs = {
        "fastapi-uv": "RUN uv sync --frozen --no-dev --no-install-workspace --package app",
        "django-pip": "/opt/venv/bin/pip install --no-cache-dir -r requirements.txt",
        "flask-poetry": "RUN poetry export --format requirements.txt --output requirements.txt",
        "starlette-pep621": "/opt/venv/bin/pip install --no-cache-dir .",
    }
    for name, install in installs.items():
        repo = byo(name)
        assert run_cli(["init", "--yes"], repo).exit_code == 0
        assert install in (repo / "Dockerfile.cloudrun").read_text(), name


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_a_second_init_overwrites_nothing(byo, run_cli, name):
    repo = byo(name)
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    (repo / "Dockerfile.cloudrun").write_text("# edited by hand\n")
    snapshot = {f: (repo / f).read_bytes() for f in WRITTEN}
    again = run_cli(["init", "--yes"], repo)
    assert again.exit_code == 0, again.output
    assert "wrote " not in again.stdout
    assert f"skipped (exists; --force overwrites): {', '.join(WRITTEN)}" in again.stdout.splitlines()
    assert {f: (repo / f).read_bytes() for f in WRITTEN} == snapshot


def test_the_infra_entry_runs_the_installed_program(byo, run_cli):
    repo = byo("starlette-pep621")
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    entry = (repo / "infra" / "__main__.py").read_text()
    code = [line for line in entry.splitlines() if line.strip() and not line.startswith(('"""', "#"))]
    assert code == ["from deployctl.infra.main import run", "run()"]
    pulumi = yaml.safe_load((repo / "Pulumi.yaml").read_text())
    assert pulumi["main"] == "infra/" and pulumi["stackConfigDir"] == "stacks"
    assert pulumi["name"] == "hello-starlette" and pulumi["runtime"]["name"] == "python"
    build = yaml.safe_load((repo / "cloudbuild.yaml").read_text())
    assert [s["id"] for s in build["steps"]] == ["build", "push", "release"]
    assert "deployctl up $_STACK --image" in build["steps"][-1]["args"][-1]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_commands_run_in_the_stack_workdir_and_env_is_templated(byo, run_cli, name):
    repo = byo(name)
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    for stack in ("local", "staging", "production"):
        loaded = config.load(stack, repo)
        web = loaded.services["web"]
        jobs = [j for j in (loaded.jobs.migrate, loaded.jobs.init) if j]
        assert not any("cd " in part for cmd in [web.command, *[j.command for j in jobs]] for part in cmd), name
    local = config.load("local", repo)
    web = local.services["web"]
    expected = {
        "fastapi-uv": ("backend", ".", ["alembic", "upgrade", "head"], ["uuid-ossp"]),
        "django-pip": (".", None, ["python", "manage.py", "migrate", "--noinput"], ["pg_trgm"]),
        "flask-poetry": (".", None, ["flask", "--app", "flaskr:create_app", "db", "upgrade"], ["citext"]),
        "starlette-pep621": (".", "src", None, None),
    }[name]
    migrate = local.jobs.migrate
    assert (web.source, web.workdir, migrate.command if migrate else None,
            local.database.extensions if local.database else None) == expected
    assert migrate is None or migrate.workdir is None  # the job runs where the service does
    if name == "fastapi-uv":
        assert web.env == {"POSTGRES_SERVER": "{db_host}", "POSTGRES_PORT": "{db_port}", "POSTGRES_USER": "{db_user}",
                           "POSTGRES_DB": "{db_name}"}
        assert web.secrets["POSTGRES_PASSWORD"] == "DB_PASSWORD"
        assert set(local.secrets) == {"DB_PASSWORD", "FIRST_SUPERUSER_PASSWORD", "SECRET_KEY"}
        assert "WORKDIR /srv/backend\nUSER 10001" in (repo / "Dockerfile.cloudrun").read_text()
