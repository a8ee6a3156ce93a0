"""The environment variables the service reads, and what each is for: its database, a secret, or other.

Reads are found in ``os.environ[…]``, ``os.environ.get``/``os.getenv``, django-environ (``env("X")``,
``env.db()``), python-decouple (``config("X")``), dj-database-url (``dj_database_url.config()`` reads
DATABASE_URL) and pydantic ``BaseSettings`` fields (with their ``env_prefix``). A read with no default is
*required*: the service will not start without it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from deployctl.scaffold.apps import dotted
from deployctl.scaffold.repo import Repo

_HINTS = ("environ", "getenv", "BaseSettings", "env(", "env.", "config(", "dj_database_url")
_URL = re.compile(r"^([A-Z0-9_]*_)?(DATABASE|DB|POSTGRES|POSTGRESQL|PG)_(URL|URI|DSN)$")
# the parts of a connection the app reads separately, by family prefix: fact -> accepted suffixes
_FAMILIES = ("POSTGRES_", "POSTGRESQL_", "PG", "DB_", "DATABASE_")
_PARTS = {"db_host": ("SERVER", "HOST", "HOSTNAME"), "db_port": ("PORT",), "db_user": ("USER", "USERNAME"),
          "password": ("PASSWORD", "PASS"), "db_name": ("DB", "NAME", "DATABASE", "DBNAME")}
# Secret-like names. The app's own signing keys are generated whatever their default (a development default
# must not reach a deployment); other passwords and secrets are generated only when the app requires them;
# tokens and keys someone else issues are provided (set by the user) when required, else only reported.
_OWN_KEY = re.compile(r"^(SECRET_KEY|JWT_SECRET|JWT_SECRET_KEY)$|_(SECRET_KEY|SIGNING_KEY|SALT)$")
_ISSUED = re.compile(r"_(TOKEN|API_KEY|ACCESS_KEY|CLIENT_SECRET|WEBHOOK_SECRET|PRIVATE_KEY|KEY)$")
_OWN_SECRET = re.compile(r"_(PASSWORD|SECRET)$")
_SECRETISH = re.compile(r"(^|_)(SECRET|PASSWORD|PASSWD|PASS|TOKEN|KEY|APIKEY|CREDENTIALS?|PRIVATE|SALT)(_|$)")


@dataclass(frozen=True)
class EnvRead:
    name: str
    file: str
    required: bool


@dataclass(frozen=True)
class Env:
    reads: dict[str, EnvRead]  # by variable: the first read, required if any read is
    settings: dict[str, str] = field(default_factory=dict)  # settings field -> its literal string default
    url: str | None = None  # the one variable holding a database URL
    parts: dict[str, str] = field(default_factory=dict)  # fact (db_host, …, password) -> variable
    generated: tuple[str, ...] = ()  # secrets the app owns: deployctl generates them
    provided: tuple[str, ...] = ()  # required secrets someone else issues: set with `deployctl secrets set`
    optional_secrets: tuple[str, ...] = ()  # secret-like variables with a default: not wired
    other_required: tuple[EnvRead, ...] = ()  # required variables that are neither database nor secret
    carried: dict[str, str] = field(default_factory=dict)  # plain values from the app's .env files (dotenv.py)
    dotenv: tuple[str, ...] = ()  # the .env files read


def secret_source(name: str) -> str | None:
    """How a secret-looking name is wired when the app is known to use it: "generated" for what the app owns
    (signing keys, passwords), "provided" for what someone else issues (tokens, API keys); None: not a secret."""
    if _OWN_KEY.search(name) or (_OWN_SECRET.search(name) and not _ISSUED.search(name)):
        return "generated"
    return "provided" if _SECRETISH.search(name) else None


def scan(repo: Repo, workdir: str) -> Env:
    reads: dict[str, EnvRead] = {}
    settings: dict[str, str] = {}
    for rel in repo.python_files(workdir):
        text = repo.text(rel) or ""
        if not any(h in text for h in _HINTS):
            continue
        tree = repo.tree(rel)
        if tree is None:
            continue
        for read in [*_calls(tree, repo.nodes(rel), rel), *_settings(tree, rel, settings)]:
            known = reads.get(read.name)
            if known is None or (read.required and not known.required):
                reads[read.name] = read
    return classify(reads, settings)


def classify(reads: dict[str, EnvRead], settings: dict[str, str]) -> Env:
    urls = sorted((n for n in reads if _URL.match(n)), key=lambda n: (n != "DATABASE_URL", n))
    url = urls[0] if urls else None
    parts = {} if url else _parts(reads)
    db = {url, *parts.values()} - {None}
    generated: list[str] = []
    provided: list[str] = []
    optional: list[str] = []
    other: list[EnvRead] = []
    for name, read in sorted(reads.items()):
        if name in db:
            continue
        if _OWN_KEY.search(name) or (_OWN_SECRET.search(name) and not _ISSUED.search(name) and read.required):
            generated.append(name)
        elif _ISSUED.search(name):
            (provided if read.required else optional).append(name)
        elif _OWN_SECRET.search(name):
            optional.append(name)
        elif read.required:
            other.append(read)
    return Env(reads, settings, url, parts, tuple(generated), tuple(provided), tuple(optional), tuple(other))


def _parts(reads: dict[str, EnvRead]) -> dict[str, str]:
    best: dict[str, str] = {}
    for family in _FAMILIES:
        found = {fact: f"{family}{s}" for fact, suffixes in _PARTS.items() for s in reversed(suffixes)
                 if f"{family}{s}" in reads}
        if len(found) > len(best) and ("db_host" in found or "db_name" in found):
            best = found
    return best


def _calls(tree: ast.Module, nodes: list[ast.AST], rel: str) -> list[EnvRead]:
    env_objects = {t.id for n in nodes if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                   and (dotted(n.value.func) or "").endswith("Env") for t in n.targets if isinstance(t, ast.Name)}
    decouple = any(isinstance(n, ast.ImportFrom) and n.module == "decouple" for n in tree.body)
    found = []
    for node in nodes:
        if isinstance(node, ast.Subscript) and (dotted(node.value) or "").endswith("environ"):
            name = _string(node.slice)
            if name and isinstance(node.ctx, ast.Load):
                found.append(EnvRead(name, rel, True))
        elif isinstance(node, ast.Call):
            read = _call(node, rel, env_objects, decouple)
            if read:
                found.append(read)
    return found


def _call(node: ast.Call, rel: str, env_objects: set[str], decouple: bool) -> EnvRead | None:
    func = dotted(node.func) or ""
    has_default = len(node.args) > 1 or any(kw.arg == "default" for kw in node.keywords)
    first = _string(node.args[0]) if node.args else None
    if func in ("os.environ.get", "environ.get", "os.getenv", "getenv"):
        return EnvRead(first, rel, False) if first else None
    if func == "dj_database_url.config" or func.endswith("dj_database_url.config"):
        url = next((_string(kw.value) for kw in node.keywords if kw.arg == "env"), None) or "DATABASE_URL"
        return EnvRead(url, rel, not has_default)
    base, _, method = func.rpartition(".")
    if (base in env_objects and method in ("db", "db_url", "cache", "url")) or func in env_objects:
        name = first or ("DATABASE_URL" if method in ("db", "db_url") else None)
        return EnvRead(name, rel, not has_default) if name else None
    if base in env_objects and first:
        return EnvRead(first, rel, not has_default)
    if decouple and func == "config" and first:
        return EnvRead(first, rel, not has_default)
    return None


def _settings(tree: ast.Module, rel: str, literals: dict[str, str]) -> list[EnvRead]:
    """Fields of pydantic BaseSettings classes (and of classes derived from one in this module)."""
    settings_classes: set[str] = set()
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {(dotted(b) or "").rsplit(".", 1)[-1] for b in node.bases}
        if not ({"BaseSettings"} | settings_classes) & bases:
            continue
        settings_classes.add(node.name)
        prefix = _env_prefix(node)
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)) \
                    or stmt.target.id.startswith("_") or stmt.target.id == "model_config":
                continue
            name = stmt.target.id
            default = _field_default(stmt.value)
            if isinstance(default, ast.Constant) and isinstance(default.value, str):
                literals[name] = default.value
            alias = _alias(stmt.value)
            env_name = alias or f"{prefix}{name}".upper()
            found.append(EnvRead(env_name, rel, default is None))
    return found


def _env_prefix(cls: ast.ClassDef) -> str:
    for node in ast.walk(cls):
        if isinstance(node, ast.keyword) and node.arg == "env_prefix":
            return _string(node.value) or ""
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "env_prefix" for t in node.targets):
            return _string(node.value) or ""
    return ""


def _field_default(value: ast.expr | None) -> ast.expr | None:
    """The default of a field: its value, or Field(default)'s; None when the field is required."""
    if value is None:
        return None
    if isinstance(value, ast.Call) and (dotted(value.func) or "").endswith("Field"):
        for kw in value.keywords:
            if kw.arg in ("default", "default_factory"):
                return kw.value
        if value.args and not (isinstance(value.args[0], ast.Constant) and value.args[0].value is Ellipsis):
            return value.args[0]
        return None
    return value


def _alias(value: ast.expr | None) -> str | None:
    if isinstance(value, ast.Call):
        for kw in value.keywords:
            if kw.arg in ("alias", "validation_alias"):
                return _string(kw.value)
    return None


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
