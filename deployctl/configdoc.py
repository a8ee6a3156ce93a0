"""Render docs/configuration.md from the stack model (types, defaults, constraints) and the descriptions
below. A test regenerates it and fails when the file is stale or a key has no description."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from deployctl import config
from deployctl.facts import DB_FACTS, ENV_FACTS

D = {
    "Stack.target": "`local` (this machine) or `gcp` (Cloud Run).",
    "Stack.services": "The services to release, by name (Cloud Run service names: lowercase, digits, hyphens).",
    "Stack.database": "The Postgres database; omit (null) for a service without one.",
    "Stack.secrets": "Every secret the stack uses, by name, and where its value comes from.",
    "Stack.jobs": "The migrate job (runs before deploy; a failure deploys nothing) and the init job (after).",
    "Stack.smoke": "HTTP checks run against each candidate and, after the switch, the service URL.",
    "Stack.rollout": "How traffic moves to a candidate and how many revisions stay warm.",
    "Stack.local": "Settings of the local target only.",
    "Stack.gcp": "Settings of the gcp target only (`gcp:project` and `gcp:region` are pulumi-gcp's keys).",
    "Stack.release": "Written by deployctl before each `pulumi up`; never edit it by hand.",
    "Service.source": "Directory with the service's code, relative to the project root and inside it (an absolute "
                      "path or `../x` is refused). Its dependencies are found from here up to the project root: "
                      "the nearest `uv.lock`, `poetry.lock` or `requirements.txt`, else a `pyproject.toml` "
                      "(docs/local.md, Builds).",
    "Service.dockerfile": "Dockerfile that builds the image (gcp), relative to the project root.",
    "Service.command": "How the service starts (the image's CMD); run in `workdir` on the local target.",
    "Service.workdir": "Where `command` and the jobs run, relative to `source` (`.` is the source itself); null: "
                       "the artifact's root, which keeps the project's layout (`app/…`). Local target; on gcp the "
                       "image's `WORKDIR` applies.",
    "Service.port": "Port the container listens on (`$PORT`).",
    "Service.cpu": "vCPUs per instance.",
    "Service.memory": "Memory per instance: a whole number and `Mi` or `Gi` (Cloud Run's format), e.g. `512Mi`, `2Gi`.",
    "Service.min_instances": "Instances kept warm (0 scales to zero).",
    "Service.max_instances": "Upper bound for autoscaling.",
    "Service.concurrency": "Requests one instance serves at once.",
    "Service.request_timeout_s": "Request timeout in seconds.",
    "Service.cpu_boost": "Startup CPU boost (shorter cold starts).",
    "Service.ingress": "Who may reach the service: `all`, `internal`, `internal-and-cloud-load-balancing`.",
    "Service.public": "Grant `allUsers` the invoker role. Off unless you mean it (policy rule).",
    "Service.env": "Plain environment variables (no secrets here: the policy pack checks). A value may use the "
                   "database facts: " + ", ".join(f"`{{{fact}}}`" for fact in ENV_FACTS) + " (e.g. `POSTGRES_SERVER: "
                   "\"{db_host}\"`); each target fills in its own (docs/local.md, docs/gcp.md). `{{x}}` is a "
                   "literal `{x}`.",
    "Service.secrets": "Environment variable → secret name; each deploy pins the secret's current version.",
    "Service.probes": "Startup and liveness probes.",
    "Service.pool": "Database connections per instance, handed to the app as DB_POOL_SIZE and DB_MAX_OVERFLOW "
                    "and counted against the database's max_connections (null: the service opens none).",
    "Pool.size": "Connections an instance keeps open.",
    "Pool.overflow": "Connections an instance may open beyond size under load.",
    "Probes.startup": "Must answer 200 before a revision counts as ready (default `/startup`).",
    "Probes.liveness": "Checked while the revision runs (default `/health`).",
    "Probe.path": "HTTP path of the probe; starts with `/`.",
    "Probe.period_s": "Seconds between attempts.",
    "Probe.timeout_s": "Seconds one attempt may take.",
    "Probe.failure_threshold": "Failed attempts before the probe fails (budget = period * threshold).",
    "Database.engine": "Only `postgres`.",
    "Database.version": "Postgres major version.",
    "Database.tier": "Cloud SQL machine tier.",
    "Database.disk_gb": "Cloud SQL disk size in GB.",
    "Database.name": "Database name.",
    "Database.user": "The application's role.",
    "Database.alternate_user": "The role's second login (default `<user>_b`); a password rotation moves "
    "between the two, so the serving revision's login stays valid (docs/runbook.md).",
    "Database.password_secret": "The secret holding the current login's password.",
    "Database.max_connections": "The instance's max_connections flag; unset, Cloud SQL's default for the tier "
                                "(the policy rule sql-connection-budget needs it for tiers Google's table lacks).",
    "Database.high_availability": "Regional HA (production).",
    "Database.deletion_protection": "Refuse to delete the instance (production).",
    "Database.backups": "Automated backups.",
    "Database.maintenance": "Maintenance window.",
    "Database.extensions": "Postgres extensions the app needs, e.g. `[vector]`. The local target creates them as "
                           "the superuser before the migrate job, after checking that its Postgres has every one "
                           "(docs/local.md, Extensions); on Cloud SQL deployctl creates none: the migrations do "
                           "(`CREATE EXTENSION IF NOT EXISTS`), as the app's role, a cloudsqlsuperuser member.",
    "Backups.enabled": "Daily backups on.",
    "Backups.start_time": "Backup window start, `HH:MM` UTC.",
    "Backups.retained": "How many backups are kept.",
    "Backups.point_in_time_recovery": "Point-in-time recovery (WAL retention).",
    "Maintenance.day": "1 = Monday … 7 = Sunday.",
    "Maintenance.hour": "Hour of the day, UTC.",
    "Secret.source": "`generated` (random, on first use), `provided` (`deployctl secrets set`), `composed`.",
    "Secret.bytes": "Random bytes of a generated secret (hex encoded: twice as many characters).",
    "Secret.template": "For composed secrets: `{OTHER_SECRET}` and "
                       + ", ".join(f"`{{{fact}}}`" for fact in DB_FACTS) + ".",
    "Secret.replication": "Secret Manager replication: `automatic` or `user-managed`.",
    "Secret.replica_locations": "Regions for user-managed replication.",
    "Jobs.migrate": "The migration job; null to have none.",
    "Jobs.init": "The post-promotion job (e.g. index creation); null to have none.",
    "Job.command": "The command, run in the release's artifact with the service's env and secrets.",
    "Job.service": "Whose image, env and secrets the job uses (default: the first service).",
    "Job.workdir": "Where the job runs, relative to its service's `source`; null: the service's `workdir`.",
    "Job.retries": "Retries after a failed attempt.",
    "Job.timeout_s": "Seconds one attempt may take.",
    "Job.blocking": "Whether a failure fails the release (the init job defaults to non-blocking in the stacks).",
    "SmokeCheck.path": "HTTP path to request, from the root: it starts with `/` (e.g. `/health`).",
    "SmokeCheck.method": "HTTP method (no request body is sent).",
    "SmokeCheck.headers": "Request headers, e.g. `{Accept: application/json}` (plain text: no secrets here).",
    "SmokeCheck.expect_status": "Expected status code.",
    "SmokeCheck.body_contains": "Text the body must contain.",
    "SmokeCheck.expect_json": "Key/values the JSON response must have (a subset: other keys may be there; nested "
                              "mappings are compared the same way), e.g. `json: {status: ok}`.",
    "SmokeCheck.timeout_s": "Seconds the request may take.",
    "SmokeCheck.service": "Which service (default: the first).",
    "Rollout.steps": "Traffic percentages for the candidate, each gated by the smoke checks; ends at 100.",
    "Rollout.keep_revisions": "Recent good revisions kept ready for instant rollback.",
    "Rollout.drain_s": "Seconds a replaced revision keeps serving in-flight requests.",
    "Local.host": "Address the local router and revisions bind to.",
    "Local.port": "The stable service URL's port (further services use the next ports).",
    "Local.database_url": "Use this Postgres instead of the embedded one: an admin URL (a role that may "
                          "create roles and databases); deployctl creates the app role and database in it.",
    "Gcp.repository": "Artifact Registry repository id.",
    "Gcp.image_root": "Where the image holds the project root (the Dockerfile's WORKDIR its COPY lines land in); a "
                      "service's or job's workdir becomes its container's working_dir under it.",
    "Gcp.state_bucket": "GCS bucket for the shared ledger and lock (and the Pulumi backend); when null, "
                        f"`{config.DEFAULT_STATE_BUCKET}`.",
    "Gcp.trigger": "The Cloud Build trigger on push.",
    "Gcp.monitoring": "Uptime check and alert thresholds.",
    "Gcp.accept_risks": "Policy rule ids this stack knowingly accepts.",
    "Gcp.promote_from": "Stacks whose images `deployctl promote SRC` deploys here (e.g. [staging]): `deployctl "
                        "bootstrap` lets this project's Cloud Run Service Agent read their image repositories when "
                        "they live in another project, and `deployctl doctor` checks it.",
    "Trigger.branch": "Regex of the branch whose pushes release (set this or tag).",
    "Trigger.tag": "Regex of the tags whose pushes release, e.g. ^v[0-9]+\\.[0-9]+\\.[0-9]+$ (set this or branch).",
    "Trigger.approval": "Require approval before the build runs (production).",
    "Trigger.repository": "Required: the Cloud Build (2nd gen) repository the trigger watches, "
                          "projects/P/locations/R/connections/C/repositories/NAME.",
    "Monitoring.latency_p95_ms": "Alert when p95 latency exceeds this.",
    "Monitoring.error_ratio": "Alert when the 5xx ratio exceeds this.",
}

SHARED = """## One definition, stack overrides

The app is defined once, in `Pulumi.yaml`'s `config:` (Pulumi's project-level configuration): the
services, their env, secrets and probes, the database, the secrets, the jobs, the smoke checks, the
rollout. A stack file says only how that stack differs: `deployctl:target`, `gcp:project`,
`gcp:region`, sizes and instances, `public`, the database's tier and protection, the trigger and its
approval, the local port. `deployctl init` writes this shape, and so is the sample. A fix made once in
`Pulumi.yaml` (a health path, an env var, a secret) reaches every stack's next plan.

```yaml
# Pulumi.yaml: the app, for every stack
config:
  deployctl:services:
    value:
      api:
        command: [python, -m, app]
        env: {LOG_LEVEL: info}
```

```yaml
# stacks/Pulumi.staging.yaml: how staging differs
config:
  deployctl:target: gcp
  gcp:project: my-staging
  gcp:region: europe-central2
  deployctl:services:
    api: {max_instances: 4, public: true}
```

**Pulumi's forms.** In `Pulumi.yaml` a mapping or a list of mappings goes under `value:` (Pulumi reads
a bare mapping there as a schema); a scalar or a list of scalars may be written as is. `default:` is
Pulumi's form for keys in the project's own namespace only (a project named `deployctl`); `value:`
works for every project, which is why init writes it. Pulumi refuses a project-level key without a
value, so `deployctl:database: null` (no database) goes in each stack file, not in `Pulumi.yaml`.
deployctl refuses what Pulumi refuses, naming `Pulumi.yaml` and the key.

**The merge rule.** A stack's maps merge into the shared ones key by key, at every depth
(`services.api.max_instances` in a stack changes that and nothing else); a list (`smoke`,
`rollout.steps`, `command`), a scalar or `null` set by the stack replaces the shared value whole.
Inside the maps keyed by name (`services`, `secrets`, a service's `env` and `secrets`), `null` removes
that name, as in a JSON merge patch (RFC 7386): `services: {api: {env: {DEBUG: null}}}` in the
production stack drops the shared `DEBUG`, and `secrets: {SENTRY_DSN: null}` a secret the local stack
does not use.
Pulumi itself merges project and stack config per top-level key: a stack that sets
`deployctl:services` replaces the whole key, so `pulumi config get deployctl:services` shows only the
stack's part. That cannot change what is deployed: the Pulumi program reads deployctl's keys through
deployctl's own loader (`deployctl.config.load`, the one place the merge is computed, used by every
command and by the program), and the only other keys deployctl reads, `gcp:project` and `gcp:region`,
are scalars, which both rules treat alike. Deep merging is the point: with Pulumi's rule a stack that
changes one service setting would have to copy the whole service, which is the copying this shape ends.

**What a stack gets.** `deployctl plan STACK --show-config` prints the merged settings as one stack
file would hold them (`--json`: with the files they came from); it is read-only, like every plan. An
error in a merged value names the file that set the key (`Pulumi.yaml: deployctl:smoke.1.path: must
start with "/"`); where a value merges both files, the hint says so.

**Full stack files still work.** A stack file that holds the whole definition (what earlier versions
of init wrote) loads as before; with a `Pulumi.yaml` that has a `config:`, its values win key by key.
`deployctl init` in a project that already has a `Pulumi.yaml` (without `--force`) keeps that file and
writes whole stack files. Neither file is ever written by `up`, `plan` or any other deploy command.
""".splitlines()

_SKIP = {"Stack.name", "Stack.file", "Stack.project", "Stack.region", "Stack.release"}  # release: not a file key


def render() -> str:
    out = [
        "# Configuration",
        "",
        "<!-- generated by `python -m deployctl.configdoc > docs/configuration.md`; a test keeps it current -->",
        "",
        "A stack is `stacks/Pulumi.<stack>.yaml`, a Pulumi stack file. deployctl reads the keys under the",
        "`deployctl:` namespace of its `config:` mapping, plus pulumi-gcp's `gcp:project` and `gcp:region`,",
        "merged over the same keys in `Pulumi.yaml` (below). Unknown keys are errors (with a \"did you",
        "mean\"); every error names the file that holds the key, and the key path. See `Pulumi.yaml` and",
        "`stacks/` for the sample.",
        "",
        *SHARED,
        "## Stack names",
        "",
        "A stack's name is the `<stack>` of its file and the STACK of every command. It is 1-63 lowercase",
        "letters, digits and hyphens, not starting with a hyphen (`[a-z0-9][a-z0-9-]*`), because it becomes a",
        "file name (`stacks/Pulumi.<stack>.yaml`) and a directory (`.deployctl/<stack>/`). Any other name",
        "(`Staging`, `../x`, `a/b`, `-x`, empty) is refused with exit code 2 (usage) before any file is read",
        "or written, by every command. A `gcp` stack's name also prefixes its cloud resources, so it is",
        "stricter: at most 20 characters, starting with a letter (`plan`, `audit` and `up` refuse another",
        "with exit code 3). Each Cloud Run service is named `<stack>-<service>`, and Cloud Run limits that",
        "name: fewer than 50 characters, and at most 37 so that the `candidate` traffic tag fits beside it",
        "(Cloud Run: \"Combined traffic tag and service name cannot exceed 46 characters\"). `plan` refuses a longer",
        "one offline, naming the stack file and the service key.",
        "",
    ]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("deployctl:", config.Stack)]
    while queue:
        prefix, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        title = f"## `{prefix}…` ({model.__name__})" if prefix != "deployctl:" else "## `deployctl:…` (the stack)"
        out += [title, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = f"{model.__name__}.{name}"
            if key in _SKIP:
                continue
            if key not in D:
                raise KeyError(f"no description for {key}")
            default = "required" if field.is_required() else f"`{_default(field.default)}`"
            out.append(f"| `{field.alias or name}` | {_type(field.annotation)} | {default} | {D[key]} |")
            for step, sub in _models(field.annotation):
                queue.append((f"{prefix}{name}.{step}", sub))
        out.append("")
    return "\n".join(out)


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, list) and value and isinstance(value[0], config.SmokeCheck):
        return ", ".join(check.path for check in value)
    return str(value).replace("|", "\\|")


def _type(annotation: Any) -> str:
    """A readable type: `dict[str, Service]`, `int`, `one of 1, 2, 4, 8`, `Database or null`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (dict, list):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _models(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """Nested models with the path step that reaches them: '' (a field), '<name>.' (dict), '<i>.' (list)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin is dict:
        return [("<name>." + step, m) for step, m in _models(args[1])]
    if origin is list:
        return [("<i>." + step, m) for step, m in _models(args[0])]
    found = []
    for arg in args:
        found += _models(arg)
    return found


if __name__ == "__main__":
    print(render())
