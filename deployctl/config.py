"""One validated, frozen model of a stack, read by deployctl and by its Pulumi program (deployctl.infra).

A stack is a Pulumi stack file, ``stacks/Pulumi.<stack>.yaml``. deployctl's settings live under the
``deployctl:`` namespace of its ``config:`` mapping; ``gcp:project`` and ``gcp:region`` are pulumi-gcp's
own keys and are read as they are. Other namespaces are left to Pulumi.

Rule: loading either returns a complete, frozen :class:`Stack` or raises :class:`ConfigError` whose
one-line message names the file and the key path (``stacks/Pulumi.staging.yaml: deployctl:services.api.cpu:
must be one of 1, 2, 4, 8``), with a "did you mean" hint for misspelt keys. Nothing is half-loaded.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
import secrets as pysecrets
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from deployctl.configfiles import (
    NAMESPACE,
    PROJECT_FILE,
    Layer,
    Merged,
    as_stack_file,
    merge,
    project_config,
    read_yaml,
    stack_config,
)
from deployctl.errors import ConfigError, UsageError
from deployctl.facts import DB_FACTS, ENV_FACTS, env_references

STACKS_DIR = "stacks"
# A stack name becomes a file name (stacks/Pulumi.<stack>.yaml) and a directory (.deployctl/<stack>/): no
# separators, no dots, no leading hyphen (it would read as an option). gcp stacks are stricter (infra/naming.py).
STACK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_NAME = r"^[a-z]([-a-z0-9]{0,46}[a-z0-9])?$"  # what Cloud Run accepts for service and job names
_ENV = r"^[A-Z_][A-Z0-9_]*$"
_SECRET = r"^[A-Za-z0-9_-]{1,255}$"  # Secret Manager's secret-id alphabet
SUPPORTED_POSTGRES = (13, 14, 15, 16, 17)


class _Model(BaseModel):
    # NaN passes every bound (each comparison is false) and .inf is YAML for a number too: neither is a setting
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _HintedError(ValueError):
    """A value error that carries its own hint (the message says what is wrong, the hint how to write it)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise _HintedError('must start with "/"', f'Write the path from the root: "/{path.lstrip("./")}".')
    return path


def _memory(value: Any) -> Any:
    # Cloud Run's memory limit is a quantity like 512Mi or 1Gi; a bare number would be bytes there
    if not (isinstance(value, str) and re.fullmatch(r"[1-9][0-9]*(Mi|Gi)", value)):
        raise _HintedError(f"{value!r} is not a size like 512Mi or 1Gi",
                       "Write a whole number followed by Mi (mebibytes) or Gi (gibibytes), e.g. memory: 512Mi.")
    return value


def _under(what: str, example: str) -> Any:
    """A validator of a relative path that stays under *what* (the build copies nothing from outside it)."""

    def check(path: str | None) -> str | None:
        if path is not None and (path.startswith(("/", "~")) or ".." in PurePosixPath(path).parts):
            raise _HintedError(f"{path!r} is outside {what}", f"Write a path under {what}, e.g. {example}.")
        return path

    return AfterValidator(check)


UrlPath = Annotated[str, AfterValidator(_absolute)]  # an HTTP path: probes and smoke checks
Memory = Annotated[str, BeforeValidator(_memory)]
SourceDir = Annotated[str, _under("the project root", "source: backend")]
WorkDir = Annotated[str | None, _under("the service's source", "workdir: . (the source itself)")]


class Probe(_Model):
    """An HTTP probe: Cloud Run's startup/liveness probe, and what the local target waits on."""

    path: UrlPath = "/health"
    period_s: Annotated[int, Field(ge=1, le=240)] = 2
    timeout_s: Annotated[int, Field(ge=1, le=240)] = 2
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 15


class Probes(_Model):
    startup: Probe = Probe(path="/startup")
    liveness: Probe = Probe(path="/health", period_s=10, failure_threshold=3)


POOL_ENV = ("DB_POOL_SIZE", "DB_MAX_OVERFLOW")  # how a service learns its pool (the sample app reads them)


class Pool(_Model):
    """The database connections one instance of a service may hold: a pool and its overflow. deployctl
    hands them to the app as DB_POOL_SIZE and DB_MAX_OVERFLOW and counts them against the database's
    max_connections (the policy rule sql-connection-budget)."""

    size: Annotated[int, Field(ge=1, le=100)] = 5
    overflow: Annotated[int, Field(ge=0, le=100)] = 5

    @property
    def connections(self) -> int:
        return self.size + self.overflow


class Service(_Model):
    source: SourceDir = "app"
    dockerfile: str = "Dockerfile.cloudrun"
    command: list[str] = ["python", "-m", "app"]
    workdir: WorkDir = None  # relative to source; None: the artifact's root (the project root's layout)
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    cpu: Literal[1, 2, 4, 8] = 1
    memory: Memory = "512Mi"
    min_instances: Annotated[int, Field(ge=0, le=1000)] = 0
    max_instances: Annotated[int, Field(ge=1, le=1000)] = 5
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 80
    request_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 300
    cpu_boost: bool = True
    ingress: Literal["all", "internal", "internal-and-cloud-load-balancing"] = "all"
    public: bool = False
    env: dict[Annotated[str, Field(pattern=_ENV)], str] = {}
    secrets: dict[Annotated[str, Field(pattern=_ENV)], str] = {}
    probes: Probes = Probes()
    pool: Pool | None = Pool()  # None: the service opens no database connections deployctl should count

    @model_validator(mode="after")
    def _instances(self) -> Service:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) is above max_instances ({self.max_instances})")
        clash = sorted(set(self.env) & set(self.secrets))
        if clash:
            raise ValueError(f"{clash[0]} is set both in env and in secrets")
        if set(POOL_ENV) & set(self.env):
            raise ValueError(f"set the pool with pool: {{size, overflow}}, not with env {'/'.join(POOL_ENV)}")
        return self

    @property
    def runtime_env(self) -> dict[str, str]:
        """``env`` plus the pool settings: what every revision and job of the service gets as plain env."""
        pool = {} if self.pool is None else dict(zip(POOL_ENV, (str(self.pool.size), str(self.pool.overflow)),
                                                     strict=True))
        return {**pool, **self.env}


class Backups(_Model):
    enabled: bool = True
    start_time: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "03:00"
    retained: Annotated[int, Field(ge=1, le=365)] = 7
    point_in_time_recovery: bool = True


class Maintenance(_Model):
    day: Annotated[int, Field(ge=1, le=7)] = 7  # 1 = Monday … 7 = Sunday, as Cloud SQL counts
    hour: Annotated[int, Field(ge=0, le=23)] = 4


class Database(_Model):
    engine: Literal["postgres"] = "postgres"
    version: int = 16
    tier: str = "db-f1-micro"
    disk_gb: Annotated[int, Field(ge=10, le=65536)] = 10
    name: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "app"
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "app"
    # the second login of the same role, so a password rotation never breaks the serving revision
    alternate_user: Annotated[str | None, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = None
    password_secret: str = "DB_PASSWORD"
    # the instance's max_connections flag; unset, Cloud SQL's default for the tier applies
    max_connections: Annotated[int | None, Field(ge=14, le=262143)] = None
    high_availability: bool = False
    deletion_protection: bool = False
    backups: Backups = Backups()
    maintenance: Maintenance = Maintenance()
    # created by the superuser before migrate on the local target; on Cloud SQL the migrations create them
    extensions: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]] = []

    @field_validator("version")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v not in SUPPORTED_POSTGRES:
            raise ValueError(f"must be one of {', '.join(map(str, SUPPORTED_POSTGRES))}")
        return v

    @model_validator(mode="after")
    def _distinct_logins(self) -> Database:
        if self.alternate_user == self.user:
            raise ValueError("alternate_user must differ from user")
        return self

    @property
    def logins(self) -> tuple[str, str]:
        """The two logins of the database role: ``user`` and ``alternate_user`` (default ``<user>_b``)."""
        return self.user, self.alternate_user or f"{self.user[:61]}_b"


class Secret(_Model):
    """Where a secret's value comes from: generated here, provided by the user, or composed of others.

    ``compose`` is a template over other secrets and database facts, e.g.
    ``postgresql+psycopg://{db_user}:{DB_PASSWORD}@/{db_name}?host={db_socket}``.
    """

    source: Literal["generated", "provided", "composed"]
    bytes: Annotated[int, Field(ge=16, le=256)] = 32  # generated: this many random bytes, written as hex
    template: str | None = None
    replication: Literal["automatic", "user-managed"] = "automatic"
    replica_locations: list[str] = []

    @model_validator(mode="after")
    def _template(self) -> Secret:
        if self.source == "composed" and not self.template:
            raise ValueError("a composed secret needs a template")
        if self.source != "composed" and self.template:
            raise ValueError("template is only for source: composed")
        if self.replication == "user-managed" and not self.replica_locations:
            raise ValueError("user-managed replication needs replica_locations")
        return self

    def references(self) -> list[str]:
        """Names of the fields a composed template uses, in order."""
        return re.findall(r"\{([A-Za-z0-9_-]+)\}", self.template or "")

    def generate(self) -> str:
        """A new value of a generated secret: ``bytes`` random bytes as hex, the form the program's first value
        has (``random.RandomBytes.hex``), so every version of a secret looks alike wherever it was made."""
        return pysecrets.token_hex(self.bytes)


class Job(_Model):
    command: list[str]
    service: str | None = None  # whose image, env and secrets the job runs with; default: the first service
    workdir: WorkDir = None  # relative to the service's source; None: the service's workdir
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    timeout_s: Annotated[int, Field(ge=1, le=86400)] = 300
    blocking: bool = True


class Jobs(_Model):
    migrate: Job | None = Job(command=["alembic", "-c", "app/alembic.ini", "upgrade", "head"])
    init: Job | None = None


_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # an HTTP header name (RFC 9110 token)


class SmokeCheck(_Model):
    path: UrlPath
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[Annotated[str, Field(pattern=_TOKEN)], str] = {}
    expect_status: Annotated[int, Field(ge=100, le=599)] = 200
    body_contains: str | None = None
    # `json:` in the stack file (a field named json would shadow BaseModel.json)
    expect_json: Annotated[dict[str, Any] | None, Field(alias="json")] = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    service: str | None = None

    @model_validator(mode="after")
    def _has_body(self) -> SmokeCheck:
        if self.method == "HEAD" and (self.body_contains is not None or self.expect_json is not None):
            raise ValueError("a HEAD response has no body to check: use GET, or drop body_contains and json")
        return self


class Rollout(_Model):
    # Percentages of traffic the candidate gets, each step gated by the smoke checks; the last must be 100.
    steps: list[Annotated[int, Field(ge=1, le=100)]] = [100]
    keep_revisions: Annotated[int, Field(ge=1, le=20)] = 3
    drain_s: Annotated[float, Field(ge=0, le=600)] = 2.0

    @field_validator("steps")
    @classmethod
    def _ends_at_100(cls, v: list[int]) -> list[int]:
        if not v or v[-1] != 100 or any(a >= b for a, b in itertools.pairwise(v)):
            raise ValueError("must rise strictly and end at 100")
        return v


class Local(_Model):
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    database_url: str | None = None  # use this Postgres instead of the embedded one


_REPOSITORY = r"^projects/[^/]+/locations/[^/]+/connections/[^/]+/repositories/[^/]+$"


class Trigger(_Model):
    """A Cloud Build trigger on pushes to a branch, or of a tag, of a 2nd-gen repository connection."""

    # the Cloud Build repository resource (projects/P/locations/R/connections/C/repositories/NAME): there
    # is no default to guess, the first pulumi up would fail on it (`gcloud builds repositories list`)
    repository: Annotated[str, Field(pattern=_REPOSITORY)]
    branch: str | None = None  # a regex of branch names, e.g. ^main$
    tag: str | None = None  # a regex of tag names, e.g. ^v[0-9]+\.[0-9]+\.[0-9]+$ (releases by tag)
    approval: bool = False

    @model_validator(mode="after")
    def _one_event(self) -> Trigger:
        if (self.branch is None) == (self.tag is None):
            raise ValueError("set exactly one of branch and tag")
        return self


class Monitoring(_Model):
    latency_p95_ms: Annotated[int, Field(ge=1)] = 1000
    error_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.01


# the state bucket when deployctl:gcp.state_bucket is not set (read through Stack.state_bucket)
DEFAULT_STATE_BUCKET = "{project}-deployctl"


class Gcp(_Model):
    repository: str = "deployctl"  # Artifact Registry repository id
    # where the image holds the project root (the Dockerfile's WORKDIR that `COPY <source>/ ./<source>/` lands
    # in; `deployctl init` writes /srv): a service's or job's workdir is its container's working_dir under it
    image_root: Annotated[str, Field(pattern=r"^/")] = "/srv"
    state_bucket: str | None = None  # holds the ledger and the lock for shared stacks; see Stack.state_bucket
    trigger: Trigger | None = None
    monitoring: Monitoring = Monitoring()
    accept_risks: list[str] = []  # policy rule ids this stack knowingly accepts
    # the stacks whose images `deployctl promote SRC <this stack>` deploys here: bootstrap lets this project's
    # Cloud Run Service Agent read their image repositories, and doctor checks it (docs/runbook.md, Promote)
    promote_from: list[Annotated[str, Field(pattern=f"^{STACK_NAME.pattern}$")]] = []


class TrafficTarget(_Model):
    revision: str
    percent: Annotated[int, Field(ge=0, le=100)]
    tag: str | None = None


class Release(_Model):
    """What deployctl hands the Pulumi program for one ``pulumi up`` (``DEPLOYCTL_PULUMI_RELEASE``), never a file.

    Pulumi owns the shape of the services (scaling, probes, identities, volumes); deployctl owns releases:
    which image digest, which pinned secret versions, which revision name and where traffic goes. The
    ``phase`` says how the program treats what deployctl owns:

    - ``manual``: no release was handed over (a hand-run ``pulumi preview``/``up``): the fields deployctl
      owns are ``ignore_changes``, so Pulumi keeps what its state holds and shows no drift for them.
    - ``infra``: everything but the services' revisions, before a release migrates: identities, the image
      repository, secrets, the database and the jobs (pinned to this release), and the services that
      already exist with their template and traffic as the state holds them (``ignore_changes``); a service
      that does not exist yet is left out (``existing`` names those that do). Nothing starts, so no code
      runs before its migrations.
    - ``release``: deployctl's own ``pulumi up`` after the migrations: the program sets the owned fields to
      these values, and the services' templates make the candidate revisions.
    """

    phase: Literal["manual", "infra", "release"] = "manual"
    existing: list[str] = []  # infra: the services that exist in Cloud Run
    images: dict[str, str] = {}  # service -> REGISTRY/IMAGE@sha256:DIGEST
    secret_versions: dict[str, str] = {}  # secret -> pinned version number
    revisions: dict[str, str] = {}  # service -> name of the revision the template creates
    traffic: dict[str, list[TrafficTarget]] = {}  # service -> traffic split; empty: 100 % to the template
    env: dict[str, dict[str, str]] = {}  # service -> env values that follow the pinned secrets ({db_user})

    @field_validator("images")
    @classmethod
    def _digests(cls, v: dict[str, str]) -> dict[str, str]:
        for service, image in v.items():
            if not re.search(r"@sha256:[0-9a-f]{64}$", image):
                raise ValueError(f"{service}: {image!r} is not pinned by digest (…@sha256:<64 hex>)")
        return v


class Stack(_Model):
    name: str
    file: str
    target: Literal["local", "gcp"]
    project: str | None = None
    region: str | None = None
    services: dict[Annotated[str, Field(pattern=_NAME)], Service]
    database: Database | None = Database()
    secrets: dict[Annotated[str, Field(pattern=_SECRET)], Secret] = {}
    jobs: Jobs = Jobs()
    smoke: list[SmokeCheck] = [SmokeCheck(path="/health"), SmokeCheck(path="/startup")]
    rollout: Rollout = Rollout()
    local: Local = Local()
    gcp: Gcp = Gcp()
    release: Release = Release()

    @model_validator(mode="after")
    def _references(self) -> Stack:
        _check_references(self)
        return self

    @property
    def primary(self) -> str:
        """The first service: the default for jobs and smoke checks."""
        return next(iter(self.services))

    @property
    def state_bucket(self) -> str:
        """The GCS bucket of a gcp stack's ledger, lock and Pulumi state (set, or the default)."""
        return self.gcp.state_bucket or DEFAULT_STATE_BUCKET.format(project=self.project)

    def job_service(self, job: Job) -> str:
        return job.service or self.primary

    def secret(self, name: str) -> Secret:
        """The declared secret *name*; a name the stack does not declare is a ConfigError (exit 3) from every
        command that takes one (``secrets set`` said exit 1 and ``secrets rotate`` 3)."""
        if name not in self.secrets:
            known = ", ".join(sorted(self.secrets)) or "none"
            raise ConfigError(f"{self.file}: deployctl:secrets: no secret named {name!r}",
                              f"Declared secrets: {known}.")
        return self.secrets[name]

    def fingerprint(self) -> str:
        """A hash of everything in the stack that changes what a release deploys."""
        data = self.model_dump(mode="json", exclude={"file", "release"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _check_references(stack: Stack) -> None:
    if not stack.services:
        raise _KeyError("services", "at least one service is needed")
    _check_service_refs(stack)
    _check_templates(stack)
    _check_env(stack)
    if stack.database and stack.database.password_secret not in stack.secrets:
        raise _KeyError("database.password_secret", f"secret {stack.database.password_secret!r} is not declared")
    if stack.target == "gcp" and not (stack.project and stack.region):
        missing = "project" if not stack.project else "region"
        raise _KeyError(missing, "missing: a gcp stack needs gcp:project and gcp:region", namespace="gcp")


def _check_templates(stack: Stack) -> None:
    for name, secret in stack.secrets.items():
        for ref in secret.references():
            if ref not in stack.secrets and ref not in DB_FACTS:
                known = ", ".join(sorted(DB_FACTS))
                raise _KeyError(f"secrets.{name}.template", f"{{{ref}}} is neither a secret nor one of {known}")
            if ref in DB_FACTS and ref not in stack.secrets and stack.database is None:
                raise _KeyError(f"secrets.{name}.template", f"{{{ref}}} is a database fact, and there is no "
                                "deployctl:database")


def _check_env(stack: Stack) -> None:
    """A plain env value may refer to the database facts, never to a secret (that is what secrets: is for)."""
    known = ", ".join(sorted(ENV_FACTS))
    for name, svc in stack.services.items():
        for var, value in svc.env.items():
            key = f"services.{name}.env.{var}"
            for ref in env_references(value):
                if ref in stack.secrets:
                    hint = f"Map the variable to the secret instead: services.{name}.secrets.{var}: {ref}"
                    raise _KeyError(key, f"{{{ref}}} is a secret, and env values are plain text", hint=hint)
                if ref not in ENV_FACTS:
                    raise _KeyError(key, f"{{{ref}}} is not one of {known}",
                                    hint="Write {{name}} for a literal {name}.")
                if stack.database is None:
                    raise _KeyError(key, f"{{{ref}}} is a database fact, and there is no deployctl:database")


def _check_service_refs(stack: Stack) -> None:
    for name, svc in stack.services.items():
        for env, secret in svc.secrets.items():
            if secret not in stack.secrets:
                raise _KeyError(f"services.{name}.secrets.{env}", f"secret {secret!r} is not declared under secrets")
    for job_name in ("migrate", "init"):
        job = getattr(stack.jobs, job_name)
        if job and job.service and job.service not in stack.services:
            raise _KeyError(f"jobs.{job_name}.service", f"no service named {job.service!r}")
    for i, check in enumerate(stack.smoke):
        if check.service and check.service not in stack.services:
            raise _KeyError(f"smoke.{i}.service", f"no service named {check.service!r}")


class _KeyError(ValueError):
    """A cross-field error that knows its key path (pydantic only knows the model's)."""

    def __init__(self, path: str, message: str, namespace: str = NAMESPACE, hint: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.namespace = namespace
        self.hint = hint


# --------------------------------------------------------------------------------------------- loading


def project_root(start: Path | None = None) -> Path:
    """The nearest directory from *start* (default: the working directory) up holding Pulumi.yaml or stacks/.

    deployctl's commands start from where they are run; the Pulumi program and the policy pack start from
    the directory Pulumi runs them in (the project's infra/, or the pack inside the project's .venv).
    """
    here = start or Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() or (candidate / STACKS_DIR).is_dir():
            return candidate
    return here


def check_stack_name(stack: str) -> str:
    """*stack* if it can name a stack; UsageError (exit 2) otherwise, before any file is read or written."""
    if not STACK_NAME.fullmatch(stack):
        raise UsageError(
            f"stack name {stack!r}: must be 1-63 lowercase letters, digits and hyphens, not starting with a hyphen",
            "The name picks stacks/Pulumi.<name>.yaml (see docs/configuration.md, Stack names).",
        )
    return stack


def stack_file(stack: str, root: Path | None = None) -> Path:
    """``<root>/stacks/Pulumi.<stack>.yaml``; the one place a stack name becomes a path, so it is checked here."""
    check_stack_name(stack)
    return (root or Path.cwd()) / STACKS_DIR / f"Pulumi.{stack}.yaml"


def known_stacks(root: Path | None = None) -> list[str]:
    """The stacks that have a file under *root* (default: the working directory), sorted."""
    files = ((root or Path.cwd()) / STACKS_DIR).glob("Pulumi.*.yaml")
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in files)


def load(stack: str, root: Path | None = None) -> Stack:
    """The stack's model: Pulumi.yaml's shared definition under *root* (default: the working directory), with
    ``stacks/Pulumi.<stack>.yaml``'s overrides merged in (deployctl.configfiles), validated."""
    return _validate(merged(stack, root), stack)


def merged(stack: str, root: Path | None = None) -> Merged:
    """The stack's settings as read and merged, before validation: what ``plan STACK --show-config`` prints."""
    path = stack_file(stack, root)
    shown = f"{STACKS_DIR}/{path.name}"
    if not path.is_file():
        known = known_stacks(root)
        hint = f"Known stacks: {', '.join(known)}." if known else f"Create {shown} (see docs/configuration.md)."
        raise ConfigError(f"{shown}: no such stack file", hint)
    shared = project_config(root or Path.cwd())
    overrides = stack_config(read_yaml(path, shown), shown)
    layers = [_layer(PROJECT_FILE, shared, stack)] if shared else []
    return merge([*layers, _layer(shown, overrides, stack)])


def effective(stack: str, root: Path | None = None) -> dict[str, Any]:
    """The stack's settings as one self-contained stack file would hold them (``{"config": …}``): what
    ``plan STACK --show-config`` prints, and a document :func:`parse` reads to the model :func:`load` gives."""
    return as_stack_file(merged(stack, root).config)


def parse(raw: Any, *, stack: str, file: str) -> Stack:
    """Validate one already-parsed stack document that holds everything (no shared definition)."""
    return _validate(merge([_layer(file, stack_config(raw, file), stack)]), stack)


def _layer(file: str, config: dict[str, Any], stack: str) -> Layer:
    """One file's keys that deployctl reads, checked against the known keys before anything merges."""
    data: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == "gcp" and name in ("project", "region"):
            data[name] = value
        elif ns == NAMESPACE:
            if name == "release":  # earlier versions wrote runtime state here; it now never touches this file
                raise ConfigError(f"{file}: {key}: runtime state does not belong in a stack file",
                                  f"Delete it: pulumi config rm --path deployctl:release --stack {stack}")
            if name not in _TOP_KEYS:
                raise ConfigError(f"{file}: {key}: unknown key", _did_you_mean(name, _TOP_KEYS, NAMESPACE))
            data[name] = _reveal(value, f"{file}: {key}")
    return Layer(file, data)


def _validate(settings: Merged, stack: str) -> Stack:
    check_stack_name(stack)  # a Stack never carries a name that could leave stacks/ or .deployctl/
    file = settings.files[-1]  # the stack file: the stack's identity, and where a missing key belongs
    if "target" not in settings.config:
        raise ConfigError(f"{file}: deployctl:target: missing", "Set it to 'local' or 'gcp'.")
    try:
        return Stack.model_validate({"name": stack, "file": file, **settings.config})
    except ValidationError as exc:
        raise _config_error(exc, settings) from None


_DOCS_HINT = "Every key is described in docs/configuration.md."
_TOP_KEYS = [k for k in Stack.model_fields if k not in ("name", "file", "project", "region", "release")]


def _reveal(value: Any, where: str) -> Any:
    """``secure:`` values are ciphertext only Pulumi can read; deployctl settings must not be one."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        raise ConfigError(f"{where}: is a secure value", "Keep secret values in Secret Manager, not in settings.")
    return value


def _config_error(exc: ValidationError, settings: Merged) -> ConfigError:
    err = exc.errors()[0]
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyError):
        path = tuple(ctx_error.path.split("."))
        return _located(settings, path, f"{ctx_error.namespace}:{ctx_error.path}: {ctx_error}",
                        ctx_error.hint or _DOCS_HINT)
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    # dict keys show up twice in pydantic's loc ("env", "x", "[key]"): keep the readable part
    loc = [p for p in loc if p != "[key]"]
    message, hint = (str(ctx_error), ctx_error.hint) if isinstance(ctx_error, _HintedError) else _message(err)
    if err["type"] == "extra_forbidden":
        hint = _did_you_mean(loc[-1], _siblings(loc[:-1]), f"{NAMESPACE}:{'.'.join(loc[:-1])}")
    return _located(settings, tuple(loc), f"{NAMESPACE}:{'.'.join(loc)}: {message}", hint or _DOCS_HINT)


def _located(settings: Merged, path: tuple[str, ...], what: str, hint: str) -> ConfigError:
    """The error named after the file that set *path*; where the value merges two files, the hint says so."""
    if settings.blended(path):
        stack = settings.files[-1].split(".")[-2]
        hint = (f"{hint} The value merges {PROJECT_FILE}'s shared definition and {settings.files[-1]}: "
                f"`deployctl plan {stack} --show-config` prints it.")
    return ConfigError(f"{settings.file_of(path)}: {what}", hint)


def _message(err: Any) -> tuple[str, str | None]:
    kind, msg = err["type"], err["msg"]
    if kind == "literal_error":
        expected = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}", None
    if kind == "extra_forbidden":
        return "unknown key", None
    if kind == "missing":
        return "missing", "This key is required (see docs/configuration.md)."
    if kind == "finite_number":
        return "must be a finite number (not .nan or .inf)", None
    if kind == "string_pattern_mismatch":
        return f"{err['input']!r} does not match {err['ctx']['pattern']}", None
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg[0].lower() + msg[1:], None


def _siblings(parent: list[str]) -> list[str]:
    """The keys allowed next to an unknown key, found by walking the model along its path."""
    model: Any = Stack
    for part in parent:
        field = _field(model, part)
        if field is None:
            # inside a dict of models (services.<name>) or a list (smoke.<i>): step to the value type
            args = getattr(model, "__args__", ())
            model = args[-1] if args else model
            continue
        model = _unwrap(field.annotation)
    return keys_of(model) if isinstance(model, type) and issubclass(model, BaseModel) else []


def keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a model takes in a stack file (a field's alias where it has one)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _field(model: Any, key: str) -> Any:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return next((f for name, f in model.model_fields.items() if (f.alias or name) == key), None)


def _unwrap(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()):  # Optional[X], dict[str, X], list[X]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _did_you_mean(key: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"Did you mean {close[0]!r}?"
    return f"Known keys under {where}: {', '.join(known)}." if known else "Remove the key."
