"""The database facts a composed secret or a plain env value may use: ``{db_user}``, ``{db_socket}``, …

Rule: the facts are named here once. config.py accepts exactly these in a secret's template and in an env
value, and every side that composes a secret or renders an env value fills them in through db_facts() and
render_env(); deployctl.naming gives their values on Cloud Run (cloud_sql_facts). This module imports
nothing of deployctl, so the config model and the naming rules can both use it.
"""

from __future__ import annotations

import re

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
