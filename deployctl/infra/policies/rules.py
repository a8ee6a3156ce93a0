"""The rules. Each resource is a plain dict ``{"type", "name", "parent", "inputs"}`` (inputs in Pulumi's
camelCase property names, as the engine and the mocks see them).

Mandatory: CRITICAL and HIGH rules everywhere; production-only rules (HA, deletion protection, build
approval) on production stacks (named ``production`` or ``prod``); everything else is advisory. A value
Pulumi cannot know before the update (``UNKNOWN``, e.g. the number of a secret version being created)
is judged by what the provider will fill in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from deployctl import naming
from deployctl.config import SUPPORTED_POSTGRES, Stack

Res = Mapping[str, Any]
Resources = Sequence[Res]
PRODUCTION_NAMES = ("production", "prod")
SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIALS?)", re.IGNORECASE)
DSN_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
UNKNOWN = "(known after create)"

SERVICE = "gcp:cloudrunv2/service:Service"
JOB = "gcp:cloudrunv2/job:Job"
INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
TRIGGER = "gcp:cloudbuild/trigger:Trigger"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    mandatory: bool
    resource: str
    message: str
    remediation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Check = Callable[[Resources, Stack], list[tuple[str, str]]]  # -> [(resource name, message)]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    remediation: str
    check: Check
    production_only: bool = False

    def mandatory(self, stack: Stack) -> bool:
        if self.production_only:
            return is_production(stack)
        return self.severity in ("CRITICAL", "HIGH")

    def evaluate(self, resources: Resources, stack: Stack) -> list[Finding]:
        return [
            Finding(self.id, self.severity, self.mandatory(stack), name, message, self.remediation)
            for name, message in self.check(resources, stack)
        ]


def is_production(stack: Stack) -> bool:
    return stack.name in PRODUCTION_NAMES


def of(resources: Resources, type_: str) -> list[Res]:
    return [r for r in resources if r["type"] == type_]


def _get(data: Any, *path: str | int, default: Any = None) -> Any:
    for key in path:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return default
        if data is None:
            return default
    return data


def _settings(r: Res) -> dict[str, Any]:
    return dict(_get(r["inputs"], "settings", default={}))


def _containers(r: Res) -> list[dict[str, Any]]:
    if r["type"] == SERVICE:
        return list(_get(r["inputs"], "template", "containers", default=[]))
    return list(_get(r["inputs"], "template", "template", "containers", default=[]))


# ------------------------------------------------------------------------------------------------ Cloud Run


def run_no_public_invoker(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    public = {naming.service(stack, name) for name, svc in stack.services.items() if svc.public}
    bad = []
    for r in of(resources, "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"):
        svc = str(r["inputs"].get("name", ""))
        if r["inputs"].get("member") in PUBLIC_MEMBERS and svc not in public:
            bad.append((r["name"], f"{svc or r['name']} can be invoked by {r['inputs']['member']} but is not public"))
    return bad


def run_dedicated_sa(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    bad = []
    for r in of(resources, SERVICE) + of(resources, JOB):
        sa = _get(r["inputs"], "template", "serviceAccount") or _get(r["inputs"], "template", "template",
                                                                     "serviceAccount")
        if not sa or "-compute@developer.gserviceaccount.com" in str(sa):
            bad.append((r["name"], "runs as the default compute service account"))
    return bad


def run_ingress_explicit(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "ingress is not set") for r in of(resources, SERVICE) if not r["inputs"].get("ingress")]


def _secret_refs(r: Res) -> list[tuple[str, str, str]]:
    refs = []
    for c in _containers(r):
        for env in c.get("envs") or []:
            ref = _get(env, "valueSource", "secretKeyRef")
            if ref:
                refs.append((str(env.get("name")), str(ref.get("secret")), str(ref.get("version", ""))))
    return refs


def run_secrets_pinned(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [
        (r["name"], f"{env} reads {secret} at version {version or 'latest'!r}, not a pinned number")
        for r in of(resources, SERVICE) + of(resources, JOB)
        for env, secret, version in _secret_refs(r)
        if not (version.isdigit() or version == UNKNOWN)  # unknown: the version this update creates
    ]


def run_no_secret_in_env(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    bad = []
    for r in of(resources, SERVICE) + of(resources, JOB):
        for c in _containers(r):
            for env in c.get("envs") or []:
                name, value = str(env.get("name", "")), env.get("value")
                if value is not None and (SECRETISH.search(name) or DSN_WITH_PASSWORD.search(str(value))):
                    bad.append((r["name"], f"{name} is a plain env value that looks like a secret"))
    return bad


def job_retries_timeout(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    bad = []
    for r in of(resources, JOB):
        task = _get(r["inputs"], "template", "template", default={})
        if task.get("maxRetries") is None or not task.get("timeout"):
            bad.append((r["name"], "has no explicit max_retries and timeout"))
    return bad


# ------------------------------------------------------------------------------------------------ Cloud SQL


def sql_no_public_ip(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    bad = []
    for r in of(resources, INSTANCE):
        ip = dict(_get(_settings(r), "ipConfiguration", default={}))
        networks = ip.get("authorizedNetworks") or []
        connector_only = _settings(r).get("connectorEnforcement") == "REQUIRED"
        if networks:
            bad.append((r["name"], f"{len(networks)} authorized network(s) may reach the public IP"))
        elif ip.get("ipv4Enabled", True) and not connector_only:
            bad.append((r["name"], "public IP enabled without connector enforcement"))
    return bad


def sql_tls_required(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    ok = ("ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")
    return [(r["name"], "accepts unencrypted connections") for r in of(resources, INSTANCE)
            if _get(_settings(r), "ipConfiguration", "sslMode") not in ok]


def sql_backups(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "automated backups are off") for r in of(resources, INSTANCE)
            if not _get(_settings(r), "backupConfiguration", "enabled")]


def sql_pitr(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "point-in-time recovery is off") for r in of(resources, INSTANCE)
            if not _get(_settings(r), "backupConfiguration", "pointInTimeRecoveryEnabled")]


def sql_deletion_protection(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "deletion protection is off") for r in of(resources, INSTANCE)
            if not (r["inputs"].get("deletionProtection") and _settings(r).get("deletionProtectionEnabled"))]


def sql_ha(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "is zonal (no high availability)") for r in of(resources, INSTANCE)
            if _settings(r).get("availabilityType") != "REGIONAL"]


def sql_supported_version(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    supported = {f"POSTGRES_{v}" for v in SUPPORTED_POSTGRES}
    return [(r["name"], f"{r['inputs'].get('databaseVersion')} is not a supported version")
            for r in of(resources, INSTANCE) if r["inputs"].get("databaseVersion") not in supported]


# Cloud SQL for PostgreSQL's default max_connections by the instance's memory (Cloud SQL for PostgreSQL
# "Quotas and limits" / FAQ, "Maximum concurrent connections": 0.6 GiB (db-f1-micro) 25, 1.7 GiB
# (db-g1-small) 50, 3.75 up to 6 GiB 100, 6 up to 7.5 GiB 200, 7.5 up to 15 GiB 400, 15 up to 30 GiB 500,
# 30 up to 60 GiB 600, 60 up to 120 GiB 800, 120 GiB and above 1,000). (lower bound in GiB, connections)
MAX_CONNECTIONS_BY_MEMORY = ((120, 1000), (60, 800), (30, 600), (15, 500), (7.5, 400), (6, 200), (3.75, 100))
SHARED_CORE_MAX_CONNECTIONS = {"db-f1-micro": 25, "db-g1-small": 50}
# PostgreSQL keeps superuser_reserved_connections (default 3) slots that applications cannot use
# (PostgreSQL documentation, 20.3.1 Connection Settings).
RESERVED_CONNECTIONS = 3
CUSTOM_TIER = re.compile(r"^db-custom-(\d+)-(\d+)$")  # db-custom-<vCPUs>-<memory MiB>


def tier_max_connections(tier: str) -> int | None:
    """Cloud SQL's default max_connections for a tier, where Google documents it (None elsewhere)."""
    if tier in SHARED_CORE_MAX_CONNECTIONS:
        return SHARED_CORE_MAX_CONNECTIONS[tier]
    custom = CUSTOM_TIER.match(tier)
    if custom is None:
        return None
    gib = int(custom.group(2)) / 1024
    return next((n for floor, n in MAX_CONNECTIONS_BY_MEMORY if gib >= floor), None)


def _env(r: Res) -> dict[str, str]:
    containers = _containers(r)
    return {e["name"]: str(e["value"]) for e in (containers[0].get("envs") or []) if "value" in e} if containers else {}


def _uses_database(r: Res) -> bool:
    template = r["inputs"].get("template", {})
    task = template.get("template", template)
    return any("cloudSqlInstance" in v for v in task.get("volumes") or [])


def connection_budget(resources: Resources) -> tuple[int, int | None, list[str]]:
    """(connections the workloads may open, the instance's max_connections or None, what each adds).

    Every service instance holds its pool plus overflow; during a canary both revisions run, so a
    service counts twice its max_instances; every job execution holds one connection."""
    needed, parts = RESERVED_CONNECTIONS, [f"{RESERVED_CONNECTIONS} reserved"]
    for r in of(resources, SERVICE):
        if not _uses_database(r):
            continue
        env = _env(r)
        pool = int(env.get("DB_POOL_SIZE", 0)) + int(env.get("DB_MAX_OVERFLOW", 0))
        instances = int(_get(r["inputs"], "template", "scaling", "maxInstanceCount", default=100))
        needed += 2 * instances * pool
        parts.append(f"{r['name']} 2 revisions x {instances} instances x {pool}")
    jobs = [r for r in of(resources, JOB) if _uses_database(r)]
    needed += len(jobs)
    if jobs:
        parts.append(f"{len(jobs)} job(s) x 1")
    limit = None
    for r in of(resources, INSTANCE):
        flags = {f["name"]: f["value"] for f in _settings(r).get("databaseFlags") or []}
        limit = int(flags["max_connections"]) if "max_connections" in flags else tier_max_connections(
            str(_settings(r).get("tier", "")))
    return needed, limit, parts


def sql_connection_budget(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    instances = of(resources, INSTANCE)
    if not instances:
        return []
    name, tier = instances[0]["name"], _settings(instances[0]).get("tier")
    unpooled = [r["name"] for r in of(resources, SERVICE) if _uses_database(r) and "DB_POOL_SIZE" not in _env(r)]
    if unpooled:
        return [(r, "has no pool size, so its connections cannot be counted") for r in unpooled]
    needed, limit, parts = connection_budget(resources)
    if limit is None:
        return [(name, f"max_connections of tier {tier} is not in Google's table and no flag sets it")]
    if needed > limit:
        return [(name, f"workloads may open {needed} connections ({', '.join(parts)}); {tier} allows {limit}")]
    return []


# ------------------------------------------------------------------------------------- secrets, registry, IAM


def secret_replication_explicit(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "replication is neither automatic nor user-managed") for r in of(resources, SECRET)
            if not ({"auto", "userManaged"} & set(_get(r["inputs"], "replication", default={})))]


def secret_versions_disabled(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "a replaced version would be destroyed, breaking revisions that pin it")
            for r in of(resources, SECRET_VERSION) if r["inputs"].get("deletionPolicy") != "DISABLE"]


def secret_access_per_secret(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    bad = [(r["name"], f"{r['inputs'].get('role')} granted on the whole project")
           for r in of(resources, "gcp:projects/iAMMember:IAMMember")
           if str(r["inputs"].get("role", "")).startswith("roles/secretmanager.")]
    granted = {str(r["inputs"].get("secretId")) for r in of(resources, SECRET_IAM)}
    for r in of(resources, SERVICE) + of(resources, JOB):
        bad += [(r["name"], f"reads {secret} but no identity is granted access to it")
                for _, secret, _ in _secret_refs(r) if secret not in granted]
    return bad


def ar_not_public(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "the repository is readable by the public")
            for r in resources if r["type"].startswith("gcp:artifactregistry/repositoryIam")
            and (r["inputs"].get("member") in PUBLIC_MEMBERS or PUBLIC_MEMBERS & set(r["inputs"].get("members", [])))]


def ar_scanning(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "vulnerability scanning is disabled") for r in of(resources, REPOSITORY)
            if _get(r["inputs"], "vulnerabilityScanningConfig", "enablementConfig", default="DISABLED") == "DISABLED"]


def iam_no_basic_roles(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], f"grants the basic role {r['inputs'].get('role')}")
            for r in resources if "iam" in r["type"].lower() and r["inputs"].get("role") in BASIC_ROLES]


def iam_no_sa_keys(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "creates a service-account key") for r in of(resources, "gcp:serviceaccount/key:Key")]


# ---------------------------------------------------------------------------------------------- Cloud Build


def build_dedicated_sa(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    legacy = ("@cloudbuild.gserviceaccount.com", "-compute@developer.gserviceaccount.com")
    return [(r["name"], "runs as a default Cloud Build or compute account") for r in of(resources, TRIGGER)
            if not r["inputs"].get("serviceAccount") or any(x in str(r["inputs"]["serviceAccount"]) for x in legacy)]


def build_no_secret_substitutions(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], f"substitution {key} looks like a secret")
            for r in of(resources, TRIGGER) for key, value in (r["inputs"].get("substitutions") or {}).items()
            if SECRETISH.search(key) or DSN_WITH_PASSWORD.search(str(value)) or value in stack.secrets]


def build_approval_production(resources: Resources, stack: Stack) -> list[tuple[str, str]]:
    return [(r["name"], "builds run without manual approval") for r in of(resources, TRIGGER)
            if not _get(r["inputs"], "approvalConfig", "approvalRequired")]


RULES: tuple[Rule, ...] = (
    Rule("run-no-public-invoker", "CRITICAL", "Remove the allUsers invoker, or set services.<svc>.public: true.",
         run_no_public_invoker),
    Rule("run-dedicated-sa", "HIGH", "Give each service and job its own service account.", run_dedicated_sa),
    Rule("run-ingress-explicit", "MEDIUM", "Set services.<svc>.ingress explicitly.", run_ingress_explicit),
    Rule("run-secrets-pinned", "HIGH", "Reference secrets by a pinned version number, never latest.",
         run_secrets_pinned),
    Rule("run-no-secret-in-env", "CRITICAL", "Move the value to Secret Manager and list it under secrets.",
         run_no_secret_in_env),
    Rule("job-retries-timeout", "MEDIUM", "Set jobs.<job>.retries and timeout_s.", job_retries_timeout),
    Rule("sql-no-public-ip", "CRITICAL", "Remove authorized networks; require the Cloud SQL connector.",
         sql_no_public_ip),
    Rule("sql-tls-required", "HIGH", "Set ssl_mode ENCRYPTED_ONLY.", sql_tls_required),
    Rule("sql-backups", "HIGH", "Set database.backups.enabled: true.", sql_backups),
    Rule("sql-pitr", "MEDIUM", "Set database.backups.point_in_time_recovery: true.", sql_pitr),
    Rule("sql-deletion-protection", "HIGH", "Set database.deletion_protection: true.", sql_deletion_protection,
         production_only=True),
    Rule("sql-ha", "HIGH", "Set database.high_availability: true.", sql_ha, production_only=True),
    Rule("sql-connection-budget", "HIGH",
         "Lower services.<svc>.max_instances or pool, pick a larger database.tier, or set database.max_connections.",
         sql_connection_budget),
    Rule("sql-supported-version", "HIGH", "Use a supported Postgres version (database.version).",
         sql_supported_version),
    Rule("secret-replication-explicit", "LOW", "Give every secret an automatic or user-managed replication.",
         secret_replication_explicit),
    Rule("secret-versions-disabled", "HIGH", "Set deletion_policy DISABLE on secret versions.",
         secret_versions_disabled),
    Rule("secret-access-per-secret", "HIGH", "Grant secretAccessor per secret, only to identities using it.",
         secret_access_per_secret),
    Rule("ar-not-public", "CRITICAL", "Remove allUsers/allAuthenticatedUsers from the repository IAM.",
         ar_not_public),
    Rule("ar-scanning", "MEDIUM", "Enable vulnerability scanning on the repository.", ar_scanning),
    Rule("iam-no-basic-roles", "CRITICAL", "Replace owner/editor/viewer with predefined roles.", iam_no_basic_roles),
    Rule("iam-no-sa-keys", "CRITICAL", "Use workload identity, not service-account keys.", iam_no_sa_keys),
    Rule("build-dedicated-sa", "HIGH", "Run the trigger as the stack's own <stack>-build service account.",
         build_dedicated_sa),
    Rule("build-no-secret-substitutions", "CRITICAL", "Read secrets from Secret Manager inside the build.",
         build_no_secret_substitutions),
    Rule("build-approval-production", "HIGH", "Set gcp.trigger.approval: true.", build_approval_production,
         production_only=True),
)
BY_ID = {rule.id: rule for rule in RULES}


def evaluate(resources: Resources, stack: Stack) -> list[Finding]:
    return [finding for rule in RULES for finding in rule.evaluate(resources, stack)]
