"""Detection cases the fixture repositories do not show, each on a few files written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployctl.config import load
from deployctl.scaffold import plan, stacks
from deployctl.scaffold.report import detected, undetected

ROOT = Path(__file__).resolve().parents[2]


def make(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


FASTAPI = {
    "requirements.txt": "fastapi\nuvicorn\nsqlalchemy\nasyncpg\n",
    "svc/__init__.py": "",
}


def test_the_users_code_is_read_never_imported(tmp_path):
    repo = make(tmp_path, {**FASTAPI, "svc/main.py": "raise SystemExit('imported!')\nfrom fastapi import FastAPI\n"
                                                     "app = FastAPI()\n"})
    d = plan(repo).detection
    assert d.app is not None and (d.app.target, d.app.framework) == ("svc.main:app", "fastapi")


def test_a_factory_is_served_with_uvicorn_factory(tmp_path):
    repo = make(tmp_path, {**FASTAPI, "svc/main.py": "import fastapi\n\ndef create_app():\n"
                                                     "    app = fastapi.FastAPI()\n    return app\n"})
    assert "uvicorn svc.main:create_app --factory" in plan(repo).detection.command[-1]


def test_an_env_prefix_and_asyncpg_make_the_database_url(tmp_path):
    settings = ("from pydantic_settings import BaseSettings, SettingsConfigDict\n\n"
                "class Settings(BaseSettings):\n    model_config = SettingsConfigDict(env_prefix='svc_')\n"
                "    database_url: str\n    debug: bool = False\n")
    repo = make(tmp_path, {**FASTAPI, "svc/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
                           "svc/settings.py": settings})
    d = plan(repo).detection
    assert d.env.url == "SVC_DATABASE_URL" and d.url_scheme == "postgresql+asyncpg"
    shared = plan(repo).files["Pulumi.yaml"]  # the app's one definition, every stack's secrets
    assert "SVC_DATABASE_URL: {source: composed, template: 'postgresql+asyncpg://{db_user}:{DB_PASSWORD}@/" \
           "{db_name}?host={db_socket}'}" in shared


def test_django_environ_and_decouple_reads_are_found(tmp_path):
    repo = make(tmp_path, {"requirements.txt": "django\n", "site/__init__.py": "",
                           "manage.py": "import django\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                                        "'site.settings')\n",
                           "site/settings.py": "import environ\nfrom decouple import config\nenv = environ.Env()\n"
                                               "DATABASES = {'default': env.db()}\nSECRET_KEY = config('SECRET_KEY')\n"
                                               "SENTRY_TOKEN = env('SENTRY_TOKEN')\n"})
    d = plan(repo).detection
    assert (d.env.url, d.env.generated, d.env.provided) == ("DATABASE_URL", ("SECRET_KEY",), ("SENTRY_TOKEN",))
    assert "gunicorn: not among the dependencies: add it (the service command runs it)" in undetected(d)


def test_an_untrusted_extension_and_an_unread_prefix_are_said(tmp_path):
    repo = make(tmp_path, {
        **FASTAPI,
        "svc/main.py": "from fastapi import FastAPI\nfrom svc.routes import router\nfrom svc import conf\n"
                       "app = FastAPI()\napp.include_router(router, prefix=conf.PREFIX + '/v2')\n",
        "svc/routes.py": "from fastapi import APIRouter\nrouter = APIRouter()\n@router.get('/healthz')\n"
                         "def healthz():\n    return {}\n",
        "alembic.ini": "[alembic]\nscript_location = migrations\n",
        "migrations/env.py": "",
        "migrations/versions/1_geo.py": "op.execute('CREATE EXTENSION IF NOT EXISTS postgis')\n",
    })
    d = plan(repo).detection
    lines = undetected(d)
    assert ("health: /healthz mounted under a prefix init could not read: check deployctl:services.web.probes and "
            "deployctl:smoke") in lines
    assert any(line.startswith("health: no health endpoint found") for line in lines)
    assert ("extension postgis: the local target's embedded Postgres (pgserver) lacks it: `deployctl up local` runs "
            "this machine's Postgres, which must have it (Debian: apt-get install postgresql-<major>-postgis-3), or "
            "set deployctl:local.database_url (docs/local.md, Extensions)") in lines
    assert ("extension postgis: not trusted: on Cloud SQL the app's role may create it (cloudsqlsuperuser) in the "
            "migrations; make sure they do") in lines
    assert d.migrations is not None and d.migrations.command == ["alembic", "upgrade", "head"]
    assert [line for line in detected(d) if line.startswith("extensions:")] == [
        "extensions: postgis (deployctl:database.extensions: created before migrate on the local target; by the "
        "migrations on Cloud SQL)"]


def test_skipped_directories_and_unparsable_files(tmp_path):
    repo = make(tmp_path, {
        "requirements.txt": "flask\ngunicorn\n",
        "node_modules/pkg/app.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        ".venv/lib/site.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        "web.py": "from flask import Flask\napp = Flask(__name__)\n",
        "broken.py": "def (:\n  import os\nos.environ['X']\n",
    })
    d = plan(repo).detection
    assert d.app is not None and (d.app.file, d.app.target) == ("web.py", "web:app")
    assert "could not parse broken.py: skipped" in undetected(d)


def test_on_deployctls_own_sample_app_it_finds_what_the_shipped_stacks_say():
    """The sample app (app/, a uv workspace member) read as a stranger's repository; nothing is written."""
    scaffold = plan(ROOT)
    d, shipped = scaffold.detection, load("staging", ROOT)
    assert d.app is not None and d.app.file == "app/main.py" and d.source == "app"
    assert (d.deps.manager, d.deps.package) == ("uv", "deployctl-sample-app")
    assert d.migrations is not None and shipped.jobs.migrate is not None
    assert d.migrations.command == shipped.jobs.migrate.command
    assert {"/health", "/startup"} <= set(d.placed_health)
    assert d.env.url == "DATABASE_URL" and d.url_scheme == "postgresql+psycopg"
    assert "SECRET_KEY" in d.env.generated


@pytest.mark.parametrize("python, expected", [(".python-version", "3.11"), ("requires", "3.12")])
def test_the_python_version(tmp_path, python, expected):
    files = {"pyproject.toml": "[project]\nname = 'x'\nrequires-python = '>=3.10,<3.13'\n"}
    if python == ".python-version":
        files[".python-version"] = "3.11.9\n"
    d = plan(make(tmp_path, files)).detection
    assert d.deps.python == expected
    assert f"FROM python:{ {'3.11': '3.11.11', '3.12': '3.12.8'}[expected]}-slim-bookworm AS builder" in \
        plan(tmp_path).files["Dockerfile.cloudrun"]


def test_runtime_txt_is_a_pin_and_the_local_target_reads_the_same_version(tmp_path):
    """init's image and the local target's venv come from one reading of the declared version."""
    from deployctl.targets.local import deps as local_deps

    make(tmp_path, {"requirements.txt": "flask\n", "runtime.txt": "python-3.11.9\n",
                    "pyproject.toml": "[project]\nname = 'x'\nrequires-python = '>=3.10'\n"})
    d = plan(tmp_path).detection
    assert (d.deps.python, d.deps.python_from) == ("3.11", "runtime.txt")
    spec = local_deps.find(tmp_path, ".")
    assert spec.python is not None and (spec.python.minor, spec.python.source) == ("3.11", "runtime.txt")


def test_a_migration_directory_apart_from_the_app_is_reached_from_the_service_workdir(tmp_path):
    repo = make(tmp_path, {
        "backend/pyproject.toml": "[project]\nname = 'b'\nversion = '1'\ndependencies = ['fastapi', 'alembic']\n",
        "backend/app/__init__.py": "",
        "backend/app/main.py": "from fastapi import FastAPI\nfrom app import x\napp = FastAPI()\n",
        "backend/db/alembic.ini": "[alembic]\nscript_location = versions\n",
        "backend/db/versions/1_a.py": "",
    })
    d = plan(repo).detection
    assert (d.source, d.service_workdir) == ("backend", ".")
    shared = stacks.project_config(d)
    assert "command: [sh, -c, cd db && exec alembic upgrade head]" in shared, shared
    assert "workdir: ." in shared


def _local(d) -> dict:
    import yaml

    return yaml.safe_load(stacks.project_config(d))["config"]["deployctl:services"]["value"]["web"]


def test_the_report_names_no_password_it_did_not_wire(tmp_path):
    repo = make(tmp_path, {**FASTAPI, "svc/main.py": (
        "import os\nfrom fastapi import FastAPI\napp = FastAPI()\n"
        "HOST = os.environ['POSTGRES_HOST']\nNAME = os.environ['POSTGRES_DB']\n")})
    d = plan(repo).detection
    assert "secrets" not in _local(d)
    assert [line for line in detected(d) if line.startswith("database")] == [
        "database: POSTGRES_HOST={db_host}, POSTGRES_DB={db_name} (separate variables, env); no password variable"]
    assert not any("DB_PASSWORD" in line for line in detected(d))
    assert ("database password: the service reads no password variable beside POSTGRES_HOST, POSTGRES_DB: none "
            "is wired; map the one it reads to the secret DB_PASSWORD under deployctl:services.web.secrets"
            ) in undetected(d)


def test_dotenv_values_are_carried_and_its_secrets_wired(tmp_path):
    repo = make(tmp_path, {**FASTAPI, "svc/main.py": (
        "import os\nfrom fastapi import FastAPI\napp = FastAPI()\nDEBUG = os.environ['DEBUG']\n"
        "URL = os.environ['DATABASE_URL']\n"),
        ".env.example": ("# copy to .env\nDEBUG=1\nexport TITLE=\"My {app}\"  # shown\nSECRET_KEY=change-me\n"
                         "STRIPE_API_KEY=sk_test_x\nDATABASE_URL=postgres://localhost/x\nPORT=8000\nEMPTY=\n"),
        ".env": "DEBUG=0\nLOG_LEVEL=info # local\nSENTRY_DSN=https://0123abcd@o1.ingest.example/1\n",
    })
    d = plan(repo).detection
    web = _local(d)
    # .env is the developer's own (git ignores it, it holds real credentials): no value of it is written;
    # DEBUG is a developer's switch, which the shared definition would carry into production
    assert web["env"] == {"TITLE": "My {{app}}"}
    assert web["secrets"] == {"DATABASE_URL": "DATABASE_URL", "SECRET_KEY": "SECRET_KEY",
                              "STRIPE_API_KEY": "STRIPE_API_KEY"}
    assert "0123abcd" not in stacks.project_config(d)
    assert detected(d)[-4:] == [
        "database: DATABASE_URL (one URL): a composed secret, postgresql+asyncpg://…?host=<socket>",
        "env: TITLE (values from .env.example)",
        "secrets: SECRET_KEY (generated)",
        "secrets: STRIPE_API_KEY (provided: you set them)",
    ]
    assert any(line.startswith("DEBUG:") for line in undetected(d))  # required, not carried: a gap to set


def test_a_value_with_credentials_in_a_url_is_a_secret_never_a_carried_value(tmp_path):
    repo = make(tmp_path, {**FASTAPI, "svc/main.py": (
        "import os\nfrom fastapi import FastAPI\napp = FastAPI()\nBROKER = os.environ['CELERY_BROKER_URL']\n"),
        ".env.example": "CELERY_BROKER_URL=amqp://guest:guest@localhost:5672//\nREDIS_URL=redis://localhost:6379/0\n",
    })
    d = plan(repo).detection
    web = _local(d)
    assert web["env"] == {"REDIS_URL": "redis://localhost:6379/0"}
    assert web["secrets"] == {"CELERY_BROKER_URL": "CELERY_BROKER_URL"}
    assert "guest:guest" not in stacks.project_config(d)
