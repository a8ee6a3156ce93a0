"""The app's one definition (Pulumi.yaml's ``config:``) and the three stacks init writes: local, staging and
production, each saying only how it differs, shaped like deployctl's own Pulumi.yaml and stacks.

Rule: every stack is validated with deployctl's config model (the shared definition merged with its
overrides by ``deployctl.configfiles``, then ``deployctl.config.parse``) before anything is written, so what
init writes always loads. Where Pulumi.yaml is not written (a project that has one), each stack file holds
the whole definition instead: the same merged settings, so it loads to the same model.

The database variables an app reads separately (POSTGRES_SERVER, …) become plain ``env`` values templated
over one database fact each (``"{db_host}"``, ``"{db_port}"``, ``"{db_user}"``, ``"{db_name}"``), which each
target fills in; the password variable reads the database's password secret itself. Commands run in the
service's ``workdir`` (the directory the app imports from), not behind a ``cd``.
"""

from __future__ import annotations

import posixpath
from typing import Any

from deployctl.configfiles import PROJECT_FILE, Layer, dump, merge
from deployctl.scaffold.detect import SERVICE, Detection

PASSWORD = "DB_PASSWORD"
STACKS = ("local", "staging", "production")
REGION = "europe-central2"  # deployctl's documented example region; the report says to set your own
_HEADERS = {
    "local": "The local stack: every stage runs on this machine (embedded Postgres, real processes).",
    "staging": "Staging on Cloud Run: small Cloud SQL tier, scale to zero, no deletion protection.",
    "production": "Production on Cloud Run: regional HA Cloud SQL, deletion protection, PITR, one warm instance.",
}
PROJECT_HEADER = """# The app, defined once (written by `deployctl init`): every stack starts from these values and
# stacks/Pulumi.<stack>.yaml says only how it differs. Pulumi's project-level config: a mapping goes under
# `value:`. A stack's maps merge into these key by key; a list or a scalar it sets replaces the value here
# (deployctl's docs/configuration.md). `deployctl plan STACK --show-config` prints what a stack gets.
"""


def render(d: Detection, shared: bool = True) -> dict[str, str]:
    """``stacks/Pulumi.<stack>.yaml`` -> its text, for each stack: its overrides of :func:`project_config`, or
    (*shared* false: Pulumi.yaml is not written) the whole definition."""
    from deployctl.config import parse

    common = _shared(d)
    files = {}
    for stack in STACKS:
        path = f"stacks/Pulumi.{stack}.yaml"
        overrides = _overrides(d, stack)
        whole = merge([Layer(PROJECT_FILE, common), Layer(path, overrides)]).config
        parse({"config": whole}, stack=stack, file=path)  # a ConfigError here is init's bug, not the user's
        header = f"# {_HEADERS[stack]}\n"
        if shared:
            header += "# The app is defined once, in Pulumi.yaml: this file says only how this stack differs.\n"
        header += ("# Written by `deployctl init` from what it found in this repository; every key is in "
                   "deployctl's docs/configuration.md.\n")
        if stack != "local":
            header += "# gcp:project is a placeholder: set your project id (and region) before `deployctl bootstrap`.\n"
        files[path] = header + dump({"config": overrides if shared else whole})
    return files


def project_config(d: Detection) -> str:
    """Pulumi.yaml's ``config:`` section: the shared definition, each value in Pulumi's ``value:`` form (the
    form Pulumi accepts for another namespace's key: the project is named after the app, not deployctl)."""
    return PROJECT_HEADER + dump({"config": {key: {"value": value} for key, value in _shared(d).items()}})


def placeholder_project(stack: str) -> str:
    return f"change-me-{stack}"


def database_secrets(d: Detection) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(secrets to declare, environment variable -> secret) for the app's database variables."""
    if not d.database:
        return {}, {}
    declared: dict[str, dict[str, Any]] = {PASSWORD: {"source": "generated", "bytes": 24}}
    wired: dict[str, str] = {}
    if d.env.url:
        template = f"{d.url_scheme}://{{db_user}}:{{{PASSWORD}}}@/{{db_name}}?host={{db_socket}}"
        declared[d.env.url] = {"source": "composed", "template": template}
        wired[d.env.url] = d.env.url
    if "password" in d.env.parts:
        wired[d.env.parts["password"]] = PASSWORD
    return declared, wired


def database_env(d: Detection) -> dict[str, str]:
    """The app's separate database variables but the password, as env values templated over the facts."""
    if not d.database:
        return {}
    return {var: f"{{{fact}}}" for fact, var in d.env.parts.items() if fact != "password"}


def service_env(d: Detection) -> dict[str, str]:
    """The service's plain env: the values carried from the app's .env files (braces kept literal), then the
    database variables templated over the facts."""
    carried = {k: v.replace("{", "{{").replace("}", "}}") for k, v in d.env.carried.items()}
    return {**carried, **database_env(d)}


def wiring(d: Detection) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, str]]:
    """(plain env, secrets declared, variable -> secret): what init writes for the service, and reports."""
    declared, wired = _secrets(d)
    return service_env(d), declared, wired


def _secrets(d: Detection) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    declared, wired = database_secrets(d)
    for name in d.env.generated:
        declared[name] = {"source": "generated", "bytes": 32}
        wired[name] = name
    for name in d.env.provided:
        declared[name] = {"source": "provided"}
        wired[name] = name
    return declared, wired


def _service(d: Detection, wired: dict[str, str]) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "source": d.source, **({"workdir": d.service_workdir} if d.service_workdir else {}),
        "command": d.command, "port": d.port, "cpu": 1, "memory": "512Mi", "min_instances": 0, "max_instances": 5,
    }
    env = service_env(d)
    if env:
        svc["env"] = env
    if wired:
        svc["secrets"] = wired
    paths = d.placed_health
    if paths:
        startup, liveness = paths[0], _liveness(paths)
        svc["probes"] = {"startup": {"path": startup}, "liveness": {"path": liveness, "period_s": 10,
                                                                    "failure_threshold": 3}}
    return svc


def _service_overrides(d: Detection, stack: str) -> dict[str, Any]:
    svc: dict[str, Any] = {}
    if stack == "production":
        svc.update(cpu=2, memory="1Gi", min_instances=1, max_instances=10)
    elif d.database:
        # within db-f1-micro's 25 connections (policy rule sql-connection-budget): 3 reserved
        # + 2 revisions x 4 instances x 2 + 1 migrate job = 20
        svc.update(max_instances=4, pool={"size": 2, "overflow": 0})
    svc["public"] = True  # a web service answers the internet; set false for an internal one
    return svc


def _liveness(paths: list[str]) -> str:
    """A liveness-looking path if there is one (livez, health…), else the first."""
    for word in ("liv", "health", "ping"):
        for path in paths:
            if word in path.rstrip("/").rsplit("/", 1)[-1]:
                return path
    return paths[0]


def _database(d: Detection) -> dict[str, Any]:
    db: dict[str, Any] = {"version": 16, "name": "app", "user": "app", "password_secret": PASSWORD}
    if d.migrations and d.migrations.extensions:  # checked and created before migrate locally (docs/local.md)
        db["extensions"] = list(d.migrations.extensions)
    return db


def _database_overrides(stack: str) -> dict[str, Any]:
    if stack == "staging":
        return {"tier": "db-f1-micro", "deletion_protection": False, "high_availability": False}
    return {"tier": "db-custom-2-7680", "disk_gb": 20, "deletion_protection": True, "high_availability": True,
            "backups": {"enabled": True, "start_time": "03:00", "retained": 7, "point_in_time_recovery": True},
            "maintenance": {"day": 7, "hour": 4}}


def trigger_repository(stack: str, d: Detection) -> str:
    """A placeholder for the Cloud Build repository the trigger watches (the report says to set it)."""
    return f"projects/{placeholder_project(stack)}/locations/{REGION}/connections/github/repositories/{d.name}"


def _shared(d: Detection) -> dict[str, Any]:
    """What every stack starts from: the service, its database, secrets, jobs, smoke checks and rollout.
    No key is null here: Pulumi refuses a project-level key without a value (each stack says ``null``)."""
    declared, wired = _secrets(d)
    config: dict[str, Any] = {"deployctl:services": {SERVICE: _service(d, wired)}}
    if d.database:
        config["deployctl:database"] = _database(d)
    config["deployctl:secrets"] = declared
    config["deployctl:jobs"] = {"migrate": _migrate(d) if d.migrations else None}
    if d.placed_health:
        config["deployctl:smoke"] = [{"path": p} for p in d.placed_health[:3]]
    config["deployctl:rollout"] = {"steps": [100], "keep_revisions": 3}
    return config


def _overrides(d: Detection, stack: str) -> dict[str, Any]:
    """How *stack* differs from the shared definition: target, project and region, size, exposure, the
    database's tier and protection, the rollout, the trigger."""
    config: dict[str, Any] = {"deployctl:target": "local" if stack == "local" else "gcp"}
    if stack == "local":
        config["deployctl:local"] = {"port": 8080}
    else:
        config["gcp:project"] = placeholder_project(stack)
        config["gcp:region"] = REGION
        config["deployctl:services"] = {SERVICE: _service_overrides(d, stack)}
    if not d.database:
        config["deployctl:database"] = None
    elif stack != "local":
        config["deployctl:database"] = _database_overrides(stack)
    if stack == "production":
        config["deployctl:rollout"] = {"steps": [10, 50, 100]}
    if stack != "local":
        config["deployctl:gcp"] = _gcp(d, stack)
    return config


def _gcp(d: Detection, stack: str) -> dict[str, Any]:
    if stack == "staging":
        return {"repository": "deployctl",
                "trigger": {"repository": trigger_repository(stack, d), "branch": "^main$", "approval": False}}
    return {"repository": "deployctl",
            "trigger": {"repository": trigger_repository(stack, d), "tag": r"^v[0-9]+\.[0-9]+\.[0-9]+$",
                        "approval": True},
            "monitoring": {"latency_p95_ms": 500},
            # promote staging production: bootstrap lets Cloud Run here read staging's images
            "promote_from": ["staging"]}


def _migrate(d: Detection) -> dict[str, Any]:
    """The migrate job, in the service's workdir. Where its own directory differs, a ``cd`` relative to that
    workdir: jobs run in the image's WORKDIR on Cloud Run (a job's ``workdir`` key is the local target's only)."""
    assert d.migrations is not None
    command, where = d.migrations.command, d.migrations.workdir
    if where != d.workdir:
        command = ["sh", "-c", f"cd {posixpath.relpath(where, d.workdir)} && exec {' '.join(command)}"]
    return {"command": command, "retries": 2, "timeout_s": 300}
