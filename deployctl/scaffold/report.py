"""The report: one line per thing init detected, one per thing it could not (saying what to set by hand)."""

from __future__ import annotations

from deployctl.scaffold.apps import SERVER
from deployctl.scaffold.detect import SERVICE, Detection
from deployctl.scaffold.migrations import EMBEDDED, TRUSTED, shell_line
from deployctl.scaffold.stacks import PASSWORD, REGION, wiring
from deployctl.targets.local.providers import install_command

_MANAGERS = {"uv": "uv", "poetry": "Poetry", "pip": "pip", "pep621": "PEP 621 without a lock"}
_SVC = f"deployctl:services.{SERVICE}"


def detected(d: Detection) -> list[str]:
    lines = [_dependencies(d)]
    if d.app:
        what = f"settings {d.app.settings}" if d.app.settings else f"{d.app.attr}{'()' if d.app.factory else ''}"
        lines.append(f"framework: {d.app.title} ({d.app.file}: {what})")
        where = "" if d.workdir == "." else f" from {d.workdir}/"
        port_from = f"{d.app.server}'s default" if d.app.port_from == "default" else d.app.port_from
        lines.append(f"command: {d.app.server} {d.app.target}{where}, port {d.port} ({port_from}); listens on $PORT")
    lines.append(f"python: {d.deps.python} ({d.deps.python_from})")
    if d.migrations:
        m = d.migrations
        lines.append(f"migrations: {m.tool} ({m.where}, scripts in {m.scripts}): {shell_line(m.command, m.workdir)}")
        if m.extensions:
            lines.append(f"extensions: {', '.join(m.extensions)} (deployctl:database.extensions: created before "
                         "migrate on the local target; by the migrations on Cloud SQL)")
    if d.placed_health:
        lines.append(f"health: {', '.join(d.placed_health)} (probes and smoke checks)")
    return lines + wired(d)


def wired(d: Detection) -> list[str]:
    """What the service is given, read from what init writes (stacks.wiring), not from what it detected."""
    env, declared, secrets = wiring(d)
    lines = []
    if d.env.url in secrets:
        lines.append(f"database: {d.env.url} (one URL): a composed secret, {d.url_scheme}://…?host=<socket>")
    facts = {var: value for var, value in env.items() if var not in d.env.carried}
    if facts:
        password = [var for var, secret in secrets.items() if secret == PASSWORD]
        how = f"; {password[0]} from the secret {PASSWORD}" if password else "; no password variable"
        lines.append(f"database: {', '.join(f'{var}={value}' for var, value in facts.items())} "
                     f"(separate variables, env){how}")
    if d.env.carried:
        lines.append(f"env: {', '.join(d.env.carried)} (values from {', '.join(d.env.dotenv)})")
    for source, what in (("generated", "generated"), ("provided", "provided: you set them")):
        names = sorted(var for var, secret in secrets.items()
                       if declared.get(secret, {}).get("source") == source and secret != PASSWORD)
        if names:
            lines.append(f"secrets: {', '.join(names)} ({what})")
    return lines


def undetected(d: Detection) -> list[str]:
    lines = _app_gaps(d)
    lines += [f"gcp:project: unknown: set your project id (and gcp:region, now {REGION}) in stacks/Pulumi.staging.yaml "
              "and stacks/Pulumi.production.yaml (written as change-me-staging, change-me-production)",
              "gcp.trigger.repository: unknown: set the Cloud Build repository the trigger watches in both "
              "stacks (gcloud builds repositories list --connection=CONNECTION)"]
    if d.migrations is None:
        lines.append("migrations: no Alembic, Django or Flask-Migrate migrations found: deployctl:jobs.migrate is "
                     "null; set its command if the service has migrations")
    extensions = d.migrations.extensions if d.migrations else ()
    lacking = [name for name in extensions if name not in EMBEDDED]
    if lacking:
        it = "it" if len(lacking) == 1 else "them"
        lines.append(f"extension {', '.join(lacking)}: the local target's embedded Postgres (pgserver) lacks {it}: "
                     f"`deployctl up local` runs this machine's Postgres, which must have {it} (Debian: "
                     f"{install_command(lacking, '<major>', True)}), or set deployctl:local.database_url "
                     "(docs/local.md, Extensions)")
    for name in extensions:
        if name not in TRUSTED | EMBEDDED:
            lines.append(f"extension {name}: not trusted: on Cloud SQL the app's role may create it "
                         "(cloudsqlsuperuser) in the migrations; make sure they do")
    if not d.database:
        lines.append("database: the service reads no database variables: deployctl:database is null; add one "
                     "(and a DATABASE_URL composed secret) if it needs Postgres")
    elif d.env.parts and "password" not in d.env.parts:
        lines.append(f"database password: the service reads no password variable beside "
                     f"{', '.join(d.env.parts.values())}: none is wired; map the one it reads to the secret "
                     f"{PASSWORD} under {_SVC}.secrets")
    if d.database and d.env.parts.get("db_host"):
        lines.append(f"{d.env.parts['db_host']}: {{db_host}} is 127.0.0.1 locally but the Cloud SQL socket directory "
                     "on Cloud Run: the app must pass it to the driver as host=, not build host:port into a URL")
    lines += _env_gaps(d)
    lines += [f"could not parse {rel}: skipped" for rel in d.unparsable]
    return lines


def _dependencies(d: Detection) -> str:
    deps = d.deps
    if deps.manager is None:
        return "dependencies: none found"
    member = f", workspace member {deps.package}" if deps.package else ""
    where = "the repository root" if d.source == "." else f"{d.source}/"
    return f"dependencies: {_MANAGERS[deps.manager]} ({deps.manifest}{member}); service in {where}"


def _app_gaps(d: Detection) -> list[str]:
    lines = []
    if d.deps.manager is None:
        lines.append("dependencies: no uv.lock, poetry.lock, requirements.txt or pyproject.toml: add the install "
                     "to Dockerfile.cloudrun by hand")
    if d.app is None:
        lines.append(f"framework: no FastAPI, Starlette, Django or Flask app found: set {_SVC}.command and "
                     "the CMD of Dockerfile.cloudrun (written as python -m app)")
        return lines
    server = SERVER[d.app.framework]
    if d.deps.manager and not d.deps.has(server):
        lines.append(f"{server}: not among the dependencies: add it (the service command runs it)")
    if d.app.framework == "django":
        lines.append("static files: the image does not run collectstatic (settings must import without the "
                     "service's variables): add it to Dockerfile.cloudrun if the service serves its static files")
    unplaced = [h.path for h in d.health if not h.placed]
    if not d.placed_health:
        lines.append(f"health: no health endpoint found: add one (GET /health answering 200) and set {_SVC}.probes "
                     "and deployctl:smoke (they default to /startup and /health)")
    if unplaced:
        lines.append(f"health: {', '.join(unplaced)} mounted under a prefix init could not read: "
                     f"check {_SVC}.probes and deployctl:smoke")
    return lines


def _env_gaps(d: Detection) -> list[str]:
    lines = [f"{name}: a provided secret: deployctl secrets set STACK {name} before the first release"
             for name in d.env.provided]
    lines += [f"{name}: read with a default, not wired: add it to deployctl:secrets and {_SVC}.secrets if needed"
              for name in d.env.optional_secrets]
    lines += [f"{read.name}: required by {read.file} (no default): set it under {_SVC}.env"
              for read in d.env.other_required]
    return lines

