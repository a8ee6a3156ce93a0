"""The cloud names a stack's resources get, and the database facts a composed secret may use.

Rule: pure functions of the stack model (no Pulumi import), so the program (deployctl.infra), the policy
rules, deployctl's targets and bootstrap name things the same way. Every name is ``<stack>-<what>``; a name
Google would refuse is a ConfigError naming the stack file and the key, raised before any resource is
declared. The database facts (``{db_user}``, ``{db_socket}``, … in a secret's template or a plain env value)
are named here once: config.py accepts exactly these, and every side that composes a secret or renders an
env value fills them in through db_facts() and render_env().
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import TYPE_CHECKING

from deployctl.errors import ConfigError

if TYPE_CHECKING:  # config.py imports DB_FACTS from here
    from deployctl.config import Stack

_STACK = re.compile(r"^[a-z][a-z0-9-]{0,19}$")  # leaves room for the suffixes below within Google's limits
RUN_MAX = 63  # Cloud Run service and job names (RFC 1035 labels)
ACCOUNT_MAX = 30  # service-account ids: 6-30 characters
RELEASE_ENV = "DEPLOYCTL_PULUMI_RELEASE"  # the release deployctl hands its own `pulumi up` (config.Release JSON)


# The Google APIs a stack's resources need: the program enables them, and bootstrap enables them (with the
# few it needs itself) before the first pulumi up.
PROGRAM_APIS = (
    "run.googleapis.com",
    "sqladmin.googleapis.com",
    "secretmanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "containerscanning.googleapis.com",
    "cloudbuild.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",
)

def service(stack: Stack, svc: str) -> str:
    """The Cloud Run service name; Cloud Run names every revision ``<service name>-<suffix>``."""
    return f"{stack.name}-{svc}"


def job(stack: Stack, owner: str, kind: str) -> str:
    return f"{stack.name}-{owner}-{kind}"


def instance(stack: Stack) -> str:
    return f"{stack.name}-db"


def connection(stack: Stack) -> str:
    """The Cloud SQL connection name Google gives the instance: ``project:region:instance``."""
    return f"{stack.project}:{stack.region}:{instance(stack)}"


def secret(stack: Stack, name: str) -> str:
    return f"{stack.name}-{name}"


def repository(stack: Stack) -> str:
    """The Artifact Registry repository id: the stack's prefix before ``gcp.repository``."""
    return f"{stack.name}-{stack.gcp.repository}"


def trigger(stack: Stack) -> str:
    return f"{stack.name}-release"


def account(stack: Stack, role: str) -> str:
    """A service-account id (``<stack>-<role>``), shortened with a hash when it would pass 30 characters."""
    base = re.sub(r"[^a-z0-9-]", "-", f"{stack.name}-{role}".lower())
    if len(base) <= ACCOUNT_MAX:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{base[: ACCOUNT_MAX - 7].rstrip('-')}-{digest}"


def runtime_account(stack: Stack, svc: str) -> str:
    return account(stack, f"{svc}-run")


def working_dir(stack: Stack, service: str, workdir: str | None) -> str | None:
    """The container's working_dir on Cloud Run for *workdir* (relative to the service's source), or None: the
    image's own WORKDIR. The image holds the project root at ``gcp.image_root`` (the local target runs the
    same command from the same place in its artifact)."""
    if workdir is None:
        return None
    return posixpath.normpath(posixpath.join(stack.gcp.image_root, stack.services[service].source, workdir))


# -- database facts: what a composed secret's template may use besides other secrets --------------------
DB_FACTS = ("db_user", "db_name", "db_host", "db_port", "db_socket", "db_connection")
POSTGRES_PORT = "5432"
CLOUDSQL_MOUNT = "/cloudsql"  # where Cloud Run mounts the Cloud SQL sockets (one directory per connection name)


def db_facts(
    *, user: str, name: str, connection: str, socket: str, port: str = POSTGRES_PORT, host: str | None = None
) -> dict[str, str]:
    """The value of every name in DB_FACTS. Without a *host* Postgres is reached over its unix socket only,
    and db_host is the socket's directory (as on Cloud Run); the local target also listens on TCP."""
    return {"db_user": user, "db_name": name, "db_host": host or socket, "db_port": port, "db_socket": socket,
            "db_connection": connection}


def cloud_sql_facts(stack: Stack, user: str) -> dict[str, str]:
    """DB_FACTS on Cloud Run, logged in as *user*: the instance's socket where Cloud Run mounts it."""
    assert stack.database is not None  # config.py refuses a database fact in a stack without a database
    name = connection(stack)
    return db_facts(user=user, name=stack.database.name, connection=name, socket=f"{CLOUDSQL_MOUNT}/{name}")


# -- templated env: a plain env value may use the database facts, e.g. POSTGRES_SERVER: "{db_host}" ------------
# A reference is ``{name}``; ``{{name}}`` is the literal text ``{name}``; braces around anything else (JSON,
# say) are left as they are. Secrets never appear here: they go through a service's ``secrets:``.
_ENV_REF = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_FACTS = DB_FACTS


def env_references(value: str) -> list[str]:
    """The names an env value refers to, in order (escaped ``{{name}}`` is not a reference)."""
    return [m.group(2) for m in _ENV_REF.finditer(value) if m.group(2)]


def render_env(env: dict[str, str], facts: dict[str, str]) -> dict[str, str]:
    """*env* with every reference replaced by its fact (config.py has checked that each one is known)."""

    def one(value: str) -> str:
        return _ENV_REF.sub(lambda m: "{" + m.group(1) + "}" if m.group(1) else facts[m.group(2)], value)

    return {name: one(value) for name, value in env.items()}


def uses_db_facts(env: dict[str, str]) -> bool:
    return any(ref in DB_FACTS for value in env.values() for ref in env_references(value))


def check(stack: Stack) -> None:
    """Raise ConfigError when a derived name, or a revision in the release deployctl handed the program, is
    one Google would refuse."""
    if not _STACK.match(stack.name):
        raise ConfigError(
            f"{stack.file}: stack name {stack.name!r} cannot prefix Google Cloud resource names",
            "Use 1-20 lowercase letters, digits and hyphens, starting with a letter (e.g. staging).",
        )
    for svc in stack.services:
        name = service(stack, svc)
        if len(job(stack, svc, "migrate")) > RUN_MAX:
            raise ConfigError(f"{stack.file}: deployctl:services.{svc}: {name!r} is too long for Cloud Run",
                              f"Keep '<stack>-<service>-migrate' within {RUN_MAX} characters.")
        _check_revisions(stack, svc, name)


def _check_revisions(stack: Stack, svc: str, name: str) -> None:
    named = [("revisions", stack.release.revisions.get(svc))]
    named += [(f"traffic.{svc}[{i}].revision", t.revision) for i, t in enumerate(stack.release.traffic.get(svc, []))]
    for key, revision in named:
        if revision is not None and not revision.startswith(f"{name}-"):
            where = f"revisions.{svc}" if key == "revisions" else key
            raise ConfigError(
                f"{RELEASE_ENV}: {where}: {revision!r} is not a revision of {name}",
                f"Cloud Run revision names start with the service name: {name}-<suffix>.",
            )
