"""The app's own ``.env`` files: the values a developer runs it with, carried into what init writes.

Rule: ``.env.example`` (or ``.env.sample``, ``.env.template``) is read before ``.env``, in the service's
directory and then the repository root; the first value of a name wins. Only an example file's values are
carried into what init writes (Pulumi.yaml is checked in): ``.env`` is the developer's own, usually
ignored by git and holding real credentials, so from it init takes names, never values. A secret-looking
name (SECRET, PASSWORD, TOKEN, KEY, …) or a value with credentials in a URL (``scheme://user:pw@host``)
never has its value carried: it becomes a secret, generated when the app owns it (a signing key, a
password) and provided (set by the user) when someone else issues it (an API token, a broker URL). The
database variables are deployctl's to set, and PORT is Cloud Run's; neither is carried, and nor is a
developer's switch (``DEBUG``, ``FLASK_DEBUG``, ``UVICORN_RELOAD``): the shared definition reaches
production, so such a value is set per stack by hand (the report names it when the code requires it).
"""

from __future__ import annotations

import re
from dataclasses import replace

from deployctl.scaffold.envvars import Env, secret_source
from deployctl.scaffold.repo import Repo

FILES = (".env.example", ".env.sample", ".env.template", ".env")
PRIVATE = ".env"  # the developer's own file: its names are read, its values never carried
_DEVELOPMENT = re.compile(r"(^|_)(DEBUG|RELOAD|DEV)$")  # a developer's switch: never into every stack
_CREDENTIALS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]+@")  # scheme://user[:password]@host
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_NOT_CARRIED = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})  # Cloud Run sets them


def read(repo: Repo, source: str) -> tuple[dict[str, str | None], tuple[str, ...]]:
    """(name -> value, the files read) of the app's .env files (see the module's rule); a name only
    ``.env`` gives has the value None: its value is the developer's, never carried."""
    values: dict[str, str | None] = {}
    files = []
    for directory in dict.fromkeys((source, ".")):
        for name in FILES:
            rel = name if directory == "." else f"{directory}/{name}"
            if not repo.exists(rel):
                continue
            files.append(rel)
            for line in (repo.text(rel) or "").splitlines():
                match = _LINE.match(line)
                if match and match.group(1) not in values:
                    values[match.group(1)] = None if name == PRIVATE else _value(match.group(2))
    return values, tuple(files)


def _value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        end = raw.find(raw[0], 1)
        return raw[1:end] if end > 0 else raw[1:]
    return re.split(r"\s+#", raw, maxsplit=1)[0]


def merge(env: Env, values: dict[str, str | None], files: tuple[str, ...]) -> Env:
    """*env* (what the code reads) with the .env files' names: non-secret values carried, secrets wired."""
    database = {env.url, *env.parts.values()} - {None}
    wired = set(env.generated) | set(env.provided)
    carried: dict[str, str] = {}
    generated, provided = list(env.generated), list(env.provided)
    for name, value in values.items():
        if name in database or name in wired or name in _NOT_CARRIED or not name.isupper() or _DEVELOPMENT.search(name):
            continue
        kind = secret_source(name) or ("provided" if value and _CREDENTIALS.match(value) else None)
        if kind == "generated":
            generated.append(name)
        elif kind == "provided":
            provided.append(name)
        elif value:
            carried[name] = value
    secrets = set(generated) | set(provided)
    examples = tuple(f for f in files if f.rpartition("/")[2] != PRIVATE)  # where the carried values come from
    return replace(
        env, generated=tuple(sorted(generated)), provided=tuple(sorted(provided)), carried=carried, dotenv=examples,
        optional_secrets=tuple(n for n in env.optional_secrets if n not in secrets),
        other_required=tuple(r for r in env.other_required if r.name not in carried and r.name not in secrets),
    )
