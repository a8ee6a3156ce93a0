"""Bootstrap: prepare an empty Google Cloud project so that ``deployctl up STACK`` can run there.

The plan is a list of steps; each carries its user-facing message, a read-only ``is_done()`` and a
mutating ``apply()``:

1. enable the Google APIs the stack and Pulumi need (Service Usage);
2. create the state bucket (``Stack.state_bucket``: ``deployctl:gcp.state_bucket`` or its default) with
   uniform bucket-level access, public access prevention enforced and object versioning (it holds Pulumi
   state, the ledger and the lock);
3. create the build service account (``<stack>-build``, ``naming.account(stack, "build")``): the identity the
   program's Cloud Build trigger runs as, so the one that runs ``deployctl up`` on every push; and grant it
   exactly :data:`RELEASE_ROLES` on the project. It must exist before the first ``pulumi up``: the state
   bucket and the passphrase are read as it, and the first release may itself run in Cloud Build;
4. create the secret ``<stack>-pulumi-passphrase`` (Secret Manager) with a generated passphrase, which
   encrypts the stack's secrets in Pulumi state; deployctl reads it when ``PULUMI_CONFIG_PASSPHRASE`` is
   unset, so laptops and Cloud Build need no copy of it;
5. ``pulumi login gs://BUCKET`` and create the Pulumi stack with that passphrase (Automation API);
6. for each stack in ``deployctl:gcp.promote_from`` that lives in another project: let this project's Cloud
   Run Service Agent read that stack's image repository (roles/artifactregistry.reader on the repository),
   which Cloud Run needs to import a promoted image. The repository is the other stack's program's, made by
   its first ``deployctl up``; until then the step waits ("later") and a rerun of bootstrap makes it. Whoever
   may not read that repository or its policy (an admin of this project only) cannot tell whether the grant
   is there: the step is "unchecked", with the gcloud command for the other project's admins, and does not
   fail the run; a grant that is readably missing but may not be made is an error with that command.

Rules:
- Preconditions come first: without the ``pulumi`` CLI a real run raises PreconditionError before any
  change; ``--dry-run`` only reads (``is_done``) and prints every step.
- A step whose ``is_done()`` is true is skipped, so a second run makes no change.
- Clients are constructor arguments (tests pass fakes); :func:`open_bootstrap` builds the real ones and
  turns missing credentials into PreconditionError with CREDENTIALS_HINT. SDK errors become
  DeployctlError through retry.translate.
"""

from __future__ import annotations

import contextlib
import secrets as pysecrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployctl import naming
from deployctl.config import Stack
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.targets.gcp.retry import (
    API_PROPAGATION_S,
    CREDENTIALS_HINT,
    IAM_PROPAGATION_S,
    RetryPolicy,
    forbidden,
    mutate,
    read,
    reader_grant,
    translate,
    wait,
)
from deployctl.targets.gcp.secrets import SecretManager

PASSPHRASE_SECRET = "pulumi-passphrase"  # the secret <stack>-pulumi-passphrase

APIS = (
    *naming.PROGRAM_APIS,
    "cloudresourcemanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
)

# The roles `pulumi up` of deployctl.infra needs, by the resource types the program declares (a test synthesizes
# the program and fails on a type missing here). Google's predefined roles, least privilege that still works:
PROGRAM_ROLES: dict[str, tuple[str, ...]] = {
    # ProjectServices enables the APIs (serviceusage.services.enable)
    "gcp:projects/service:Service": ("roles/serviceusage.serviceUsageAdmin",),
    # Identities: the runtime and jobs accounts, and the build account's actAs on them
    # (iam.serviceAccounts.create / setIamPolicy)
    "gcp:serviceaccount/account:Account": ("roles/iam.serviceAccountAdmin",),
    "gcp:serviceaccount/iAMMember:IAMMember": ("roles/iam.serviceAccountAdmin",),
    # the accounts' project roles (cloudsql.client, run.developer, logging.logWriter):
    # resourcemanager.projects.setIamPolicy
    "gcp:projects/iAMMember:IAMMember": ("roles/resourcemanager.projectIamAdmin",),
    # the image repository, its cleanup policies and its writer binding (repoAdmin cannot create repositories)
    "gcp:artifactregistry/repository:Repository": ("roles/artifactregistry.admin",),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": ("roles/artifactregistry.admin",),
    # the stack's secrets, their versions and per-secret accessors; secretmanager.admin holds
    # secretmanager.versions.access too, which reads the Pulumi passphrase <stack>-pulumi-passphrase
    "gcp:secretmanager/secret:Secret": ("roles/secretmanager.admin",),
    "gcp:secretmanager/secretVersion:SecretVersion": ("roles/secretmanager.admin",),
    "gcp:secretmanager/secretIamMember:SecretIamMember": ("roles/secretmanager.admin",),
    # the instance, its database and both logins (users.update during a password rotation too)
    "gcp:sql/databaseInstance:DatabaseInstance": ("roles/cloudsql.admin",),
    "gcp:sql/database:Database": ("roles/cloudsql.admin",),
    "gcp:sql/user:User": ("roles/cloudsql.admin",),
    # services, jobs (and running them), the public invoker binding (run.services.setIamPolicy is run.admin
    # only); a service or job that runs as another account needs iam.serviceAccounts.actAs on it
    "gcp:cloudrunv2/service:Service": ("roles/run.admin", "roles/iam.serviceAccountUser"),
    "gcp:cloudrunv2/job:Job": ("roles/run.admin", "roles/iam.serviceAccountUser"),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ("roles/run.admin",),
    # uptime checks and alert policies
    "gcp:monitoring/alertPolicy:AlertPolicy": ("roles/monitoring.editor",),
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": ("roles/monitoring.editor",),
    # the trigger (Cloud Build "Create and manage build triggers": Cloud Build Editor), which runs as this account
    "gcp:cloudbuild/trigger:Trigger": ("roles/cloudbuild.builds.editor", "roles/iam.serviceAccountUser"),
    # generated in the Pulumi engine itself: no Google call
    "random:index/randomBytes:RandomBytes": (),
}
# What a release needs besides `pulumi up`: the state bucket holds Pulumi's state, the ledger and the lock
# (objects only: read, create with preconditions, overwrite, delete); a build that runs as a user-specified
# account with Cloud Logging only must be able to write its logs; a failed migrate/init job is explained from its
# execution's output in Cloud Logging (run_logs.py: entries.list needs logging.logEntries.list, read-only).
RELEASE_ONLY_ROLES = ("roles/storage.objectAdmin", "roles/logging.logWriter", "roles/logging.viewer")
RELEASE_ROLES = tuple(sorted({role for roles in PROGRAM_ROLES.values() for role in roles} | set(RELEASE_ONLY_ROLES)))


def build_account(stack: Stack) -> str:
    """The trigger's identity, which bootstrap creates and grants: the program's build account."""
    return naming.account(stack, "build")


def pulumi_missing(stack: str) -> PreconditionError:
    return PreconditionError(
        "the pulumi CLI is not installed",
        f"Install it: curl -fsSL https://get.pulumi.com | sh, then rerun deployctl bootstrap {stack}",
    )


@dataclass(frozen=True)
class BootstrapAction:
    """One idempotent piece of a project's one-time setup: ``is_done`` reads whether it already holds and
    ``apply`` makes it hold. Not a pipeline Step (deployctl.pipeline.plan): no run context, no waves, no undo;
    a rerun of bootstrap skips what is done, so a failed run is finished by running it again."""

    name: str
    message: str
    is_done: Callable[[], bool]
    apply: Callable[[], None]
    later: Callable[[], str | None] = lambda: None  # why it cannot be made yet (nothing to grant on), if so


class UncheckedError(PreconditionError):
    """A step whose state this caller may not read (another project's resource): not a failure of the run. The
    message says what was refused, the hint what someone who may does."""


@dataclass
class Outcome:
    """What a run did: per step, "done" (already so), "applied", "planned" (dry run), "later" (see BootstrapAction) or
    "unchecked" (see UncheckedError)."""

    stack: str
    dry_run: bool
    steps: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "dry_run": self.dry_run, "steps": self.steps}


class PulumiBackend:
    """``pulumi login gs://BUCKET`` and stack creation through the Automation API (needs the CLI)."""

    def __init__(self, root: Path, stack: str, which: Callable[[str], str | None] = shutil.which) -> None:
        self.root, self.stack, self.which = root, stack, which

    def installed(self) -> bool:
        return self.which("pulumi") is not None

    def has_stack(self, backend_url: str) -> bool:
        if not self.installed():
            return False
        from pulumi import automation as auto

        workspace = auto.LocalWorkspace(work_dir=str(self.root), env_vars={"PULUMI_BACKEND_URL": backend_url})
        return any(s.name == self.stack for s in workspace.list_stacks())

    def login_and_init(self, backend_url: str, passphrase: str) -> None:
        from pulumi import automation as auto

        subprocess.run(["pulumi", "login", backend_url], check=True, capture_output=True, cwd=self.root)
        options = auto.LocalWorkspaceOptions(env_vars={"PULUMI_CONFIG_PASSPHRASE": passphrase})
        auto.create_or_select_stack(stack_name=self.stack, work_dir=str(self.root), opts=options)


class Bootstrap:
    def __init__(self, stack: Stack, root: Path, *, service_usage: Any, storage: Any, iam: Any, projects: Any,
                 secrets: Any, registry: Any = None, pulumi: PulumiBackend | None = None,
                 policy: RetryPolicy | None = None, sources: list[Stack] | None = None) -> None:
        assert stack.project and stack.region  # config validation guarantees both for gcp stacks
        self.stack, self.project, self.region = stack, stack.project, stack.region
        self.service_usage, self.storage, self.iam, self.projects = service_usage, storage, iam, projects
        self.registry = registry
        self.sources = promotion_sources(stack, root) if sources is None else sources
        self.pulumi = pulumi or PulumiBackend(root, stack.name)
        self.policy = policy or RetryPolicy()
        self.bucket = stack.state_bucket
        self.account_id = build_account(stack)
        self.email = f"{self.account_id}@{self.project}.iam.gserviceaccount.com"
        self.secrets = SecretManager.of_stack(secrets, stack, self.policy)

    # -- the plan ---------------------------------------------------------------------------------
    def plan(self) -> list[BootstrapAction]:
        act = BootstrapAction
        return [
            act("apis", f"enable {len(APIS)} Google APIs in {self.project}", self._apis_done, self._enable_apis),
            act("bucket", f"create gs://{self.bucket} (uniform access, public access prevented, versioned)",
                self._bucket_done, self._ensure_bucket),
            act("account", f"create service account {self.email}", self._account_done, self._create_account),
            act("roles", f"grant {self.email} {len(RELEASE_ROLES)} roles: {', '.join(RELEASE_ROLES)}",
                self._roles_done, self._grant_roles),
            act("passphrase", f"create secret {self.secrets.secret_id(PASSPHRASE_SECRET)} (encrypts the stack's "
                "secrets in Pulumi state)", self._passphrase_done, self._create_passphrase),
            act("pulumi", f"pulumi login gs://{self.bucket} and create stack {self.stack.name}",
                lambda: self.pulumi.has_stack(f"gs://{self.bucket}"),
                lambda: self.pulumi.login_and_init(f"gs://{self.bucket}", self._passphrase())),
            *(self._pull_step(source) for source in self.sources),
        ]

    def run(self, dry_run: bool = False, progress: Callable[[str], None] = lambda line: None) -> Outcome:
        """Apply every step not yet done (or, with *dry_run*, only say what would be done)."""
        self.policy.propagation.say = progress
        if not dry_run and not self.pulumi.installed():
            raise pulumi_missing(self.stack.name)
        outcome = Outcome(self.stack.name, dry_run)
        for step in self.plan():
            message = step.message
            try:
                if (why := step.later()) is not None:
                    state, message = "later", f"{step.message}: {why}"
                elif step.is_done():
                    state = "done"
                elif dry_run:
                    state = "planned"
                else:
                    step.apply()
                    state = "applied"
            except UncheckedError as exc:
                state, message = "unchecked", f"{step.message}: {exc.message}. {exc.hint}"
            outcome.steps.append({"step": step.name, "state": state, "message": message})
            progress(f"  {state:<8} {message}")
        return outcome

    # -- promotion: this project's Cloud Run Service Agent reads another project's images -------------
    def _pull_step(self, source: Stack) -> BootstrapAction:
        repository = image_repository(source)
        pull = RepositoryPull(self.registry, repository, lambda: run_agent(self.projects, self.project, self.policy),
                              self.policy)
        return BootstrapAction(f"pull:{source.name}",
                               f"let {self.project}'s Cloud Run Service Agent read {source.name}'s images "
                               f"(roles/artifactregistry.reader on {repository})",
                               pull.granted, pull.grant,
                               lambda: None if pull.exists() else
                               f"the repository does not exist yet; run `deployctl up {source.name}` first, "
                               f"then `deployctl bootstrap {self.stack.name}` again")

    # -- APIs -------------------------------------------------------------------------------------
    def _disabled_apis(self) -> list[str]:
        return disabled_apis(self.service_usage, self.project, self.policy)

    def _apis_done(self) -> bool:
        return not self._disabled_apis()

    def _enable_apis(self) -> None:
        missing = self._disabled_apis()
        request = {"parent": f"projects/{self.project}", "service_ids": missing}
        operation = mutate(lambda: self.service_usage.batch_enable_services(request=request),
                           lambda: None, f"enable {', '.join(missing)}", self.policy)
        wait(operation, f"enable {', '.join(missing)}", self.policy, "the APIs may still be enabled",
             f"gcloud services list --enabled --project {self.project}")
        self.policy.propagation.begin(f"the APIs just enabled ({', '.join(missing)})", API_PROPAGATION_S)

    # -- state bucket -----------------------------------------------------------------------------
    def _lookup_bucket(self) -> Any:
        return read(lambda: self.storage.lookup_bucket(self.bucket), f"read gs://{self.bucket}", self.policy)

    def _bucket_done(self) -> bool:
        bucket = self._lookup_bucket()
        return bucket is not None and bucket_secure(bucket)

    def _ensure_bucket(self) -> None:
        bucket = self._lookup_bucket()
        if bucket is None:
            bucket = self.storage.bucket(self.bucket)
            _secure(bucket)
            mutate(lambda: self.storage.create_bucket(bucket, project=self.project, location=self.region),
                   self._lookup_bucket, f"create gs://{self.bucket}", self.policy)
            return
        _secure(bucket)
        mutate(lambda: bucket.patch(timeout=self.policy.call_timeout_s), lambda: None,
               f"secure gs://{self.bucket}", self.policy)

    # -- the Pulumi passphrase ----------------------------------------------------------------------
    def _passphrase_done(self) -> bool:
        return self.secrets.latest(PASSPHRASE_SECRET) is not None

    def _create_passphrase(self) -> None:
        self.secrets.create(PASSPHRASE_SECRET, {"managed-by": "deployctl"})
        self.secrets.add(PASSPHRASE_SECRET, pysecrets.token_urlsafe(32))

    def _passphrase(self) -> str:
        passphrase = read_passphrase(self.secrets)
        assert passphrase is not None  # the passphrase step runs first
        return passphrase

    # -- the build account and its roles ------------------------------------------------------------
    def _get_account(self) -> Any:
        return get_account(self.iam, self.project, self.email, self.policy)

    def _account_done(self) -> bool:
        return self._get_account() is not None

    def _create_account(self) -> None:
        request = {
            "name": f"projects/{self.project}",
            "account_id": self.account_id,
            "service_account": {"display_name": "deployctl: Cloud Build"},  # as the program names it
        }
        mutate(lambda: self.iam.create_service_account(request=request), self._get_account,
               f"create service account {self.email}", self.policy)

    def _policy(self) -> Any:
        return project_policy(self.projects, self.project, self.policy)

    def _missing_roles(self, policy: Any) -> list[str]:
        held = held_roles(policy, f"serviceAccount:{self.email}")
        return [role for role in RELEASE_ROLES if role not in held]

    def _roles_done(self) -> bool:
        return not self._missing_roles(self._policy())

    def _grant_roles(self) -> None:
        member = f"serviceAccount:{self.email}"
        add_bindings(self._policy,
                     lambda policy: self.projects.set_iam_policy(request={"resource": f"projects/{self.project}",
                                                                          "policy": policy},
                                                                 timeout=self.policy.call_timeout_s),
                     lambda policy: [(role, member) for role in self._missing_roles(policy)],
                     f"grant roles to {self.email}", self.policy)


def add_bindings(get: Callable[[], Any], put: Callable[[Any], Any],
                 missing: Callable[[Any], list[tuple[str, str]]], what: str, policy: RetryPolicy) -> None:
    """Add the (role, member) pairs *missing* finds to an IAM policy: read, add, write under the policy's
    etag; a concurrent change (ABORTED) means read again. The grant then propagates (IAM: minutes)."""
    from google.api_core import exceptions as gexc

    for _ in range(5):
        current = get()
        wanted = missing(current)
        if not wanted:
            return
        for role, member in wanted:
            binding = next((b for b in current.bindings if b.role == role and not b.condition.expression), None)
            if binding is None:
                binding = current.bindings.add(role=role)
            binding.members.append(member)
        try:
            put(current)
        except gexc.Aborted:
            continue
        except Exception as exc:
            raise translate(exc, what, policy) from None
        policy.propagation.begin(f"the roles just granted to {', '.join(sorted({m for _, m in wanted}))}"
                                 .replace("serviceAccount:", ""), IAM_PROPAGATION_S)
        return
    raise DeployctlError(f"{what}: the IAM policy kept changing meanwhile", "Rerun deployctl bootstrap; it only "
                         "adds what is missing.")


def promotion_sources(stack: Stack, root: Path) -> list[Stack]:
    """The stacks of ``gcp.promote_from`` whose images live in another project than *stack*'s. A name without a
    stack file, or of a stack that is not gcp, is a ConfigError naming *stack*'s file and the key."""
    from deployctl.config import ConfigError, known_stacks, load, stack_file

    key = "deployctl:gcp.promote_from"
    sources = []
    for name in stack.gcp.promote_from:
        if not stack_file(name, root).is_file():
            raise ConfigError(f"{stack.file}: {key} names {name!r}, which has no stack file",
                              f"Known stacks: {', '.join(known_stacks(root))}.")
        source = load(name, root)
        if source.target != "gcp":
            raise ConfigError(f"{stack.file}: {key} names {name!r}, which is not a gcp stack",
                              "Promotion copies an image digest between gcp stacks.")
        if source.project != stack.project:
            sources.append(source)
    return sources


def image_repository(stack: Stack) -> str:
    """The resource name of *stack*'s image repository (the program's, ``naming.repository``)."""
    return f"projects/{stack.project}/locations/{stack.region}/repositories/{naming.repository(stack)}"


def run_agent(projects: Any, project: str, policy: RetryPolicy) -> str:
    """*project*'s Cloud Run Service Agent (IAM "Service agents": service-PROJECT_NUMBER@serverless-robot-prod
    .iam.gserviceaccount.com); the number comes from Resource Manager (a project's name is projects/NUMBER)."""
    found = read(lambda: projects.get_project(name=f"projects/{project}", timeout=policy.call_timeout_s),
                 f"read project {project}", policy)
    number = str(found.name).rsplit("/", 1)[-1]
    return f"serviceAccount:service-{number}@serverless-robot-prod.iam.gserviceaccount.com"


def repository_exists(registry: Any, name: str, policy: RetryPolicy) -> bool:
    """Whether the Artifact Registry repository *name* (its resource name) exists (repositories.get: NOT_FOUND)."""
    from google.api_core import exceptions as gexc

    def get() -> bool:
        try:
            registry.get_repository(name=name, timeout=policy.call_timeout_s)
        except gexc.NotFound:
            return False
        return True

    return read(get, f"read {name}", policy)


READER = "roles/artifactregistry.reader"


class RepositoryPull:
    """Whether, and the grant by which, a Cloud Run Service Agent reads one Artifact Registry repository.

    The repository is another project's: what this command changed (APIs, roles) propagates in its own project,
    so a 403 there is not waited on (``RetryPolicy.elsewhere``). A refused read (``exists``, ``granted``) is
    :class:`UncheckedError`; a refused grant is a PreconditionError. Both carry the gcloud grant for that project's
    admins."""

    def __init__(self, registry: Any, repository: str, agent: Callable[[], str], policy: RetryPolicy) -> None:
        self.registry, self.repository, self.policy = registry, repository, policy.elsewhere()
        self._agent, self._member = agent, ""

    @property
    def member(self) -> str:
        self._member = self._member or self._agent()
        return self._member

    def exists(self) -> bool:
        with self._denied(reading=True):
            return repository_exists(self.registry, self.repository, self.policy)

    def _policy(self) -> Any:
        return read(lambda: self.registry.get_iam_policy(request={"resource": self.repository},
                                                         timeout=self.policy.call_timeout_s),
                    f"read the IAM policy of {self.repository}", self.policy)

    def granted(self) -> bool:
        member = self.member
        with self._denied(reading=True):
            return READER in held_roles(self._policy(), member)

    def grant(self) -> None:
        member = self.member
        with self._denied(reading=False):
            add_bindings(self._policy,
                         lambda policy: self.registry.set_iam_policy(request={"resource": self.repository,
                                                                              "policy": policy},
                                                                     timeout=self.policy.call_timeout_s),
                         lambda policy: [] if READER in held_roles(policy, member) else [(READER, member)],
                         f"let {member.removeprefix('serviceAccount:')} read {self.repository}", self.policy)

    def command(self) -> str:
        """The grant, for an admin of the repository's project."""
        return reader_grant(self.repository, self.member)

    @contextlib.contextmanager
    def _denied(self, reading: bool) -> Iterator[None]:
        """A 403 on the repository or its policy: the caller administers this project, not the other. What was
        refused, and who can make the grant, and how: UncheckedError when *reading*, else PreconditionError."""
        try:
            yield
        except DeployctlError as exc:
            if not forbidden(exc.__context__):
                raise
            there = self.repository.split("/")[1]
            if reading:
                raise UncheckedError(f"could not check ({exc.message.rstrip('.')})",
                                     f"If it is not granted yet, an admin of {there} runs: {self.command()}") from None
            raise PreconditionError(exc.message, f"Run it as an admin of {there} (its repository's IAM policy), or "
                                    f"have one run: {self.command()}") from None


# -- reads, shared with `deployctl doctor` ----------------------------------------------------------
def disabled_apis(service_usage: Any, project: str, policy: RetryPolicy) -> list[str]:
    """The APIs of :data:`APIS` not enabled in *project* (Service Usage ``services.batchGet``)."""
    names = [f"projects/{project}/services/{api}" for api in APIS]
    request = {"parent": f"projects/{project}", "names": names}
    response = read(lambda: service_usage.batch_get_services(request=request), "read the project's enabled APIs",
                    policy)
    enabled = {s.name.rsplit("/", 1)[-1] for s in response.services if s.state.name == "ENABLED"}
    return [api for api in APIS if api not in enabled]


def get_account(iam: Any, project: str, email: str, policy: RetryPolicy) -> Any:
    """The service account *email*, or None when it does not exist."""
    from google.api_core import exceptions as gexc

    def call() -> Any:
        try:
            return iam.get_service_account(name=f"projects/{project}/serviceAccounts/{email}")
        except gexc.NotFound:
            return None

    return read(call, f"read service account {email}", policy)


def project_policy(projects: Any, project: str, policy: RetryPolicy) -> Any:
    return read(lambda: projects.get_iam_policy(request={"resource": f"projects/{project}"}),
                f"read the IAM policy of {project}", policy)


def held_roles(policy: Any, member: str) -> set[str]:
    """The roles *member* holds directly in a project's IAM policy (not through a group or a parent)."""
    return {b.role for b in policy.bindings if member in b.members}


def read_passphrase(secrets: SecretManager) -> str | None:
    """The stack's Pulumi passphrase (the newest enabled version of its secret), if bootstrap made it."""
    latest = secrets.latest(PASSPHRASE_SECRET)
    return secrets.value(PASSPHRASE_SECRET, latest) if latest else None


def bucket_secure(bucket: Any) -> bool:
    iam = bucket.iam_configuration
    return bool(iam.uniform_bucket_level_access_enabled and iam.public_access_prevention == "enforced"
                and bucket.versioning_enabled)


def _secure(bucket: Any) -> None:
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.versioning_enabled = True


def project_clients(stack: Stack) -> tuple[Any, dict[str, Any]]:
    """Application Default Credentials and the Google clients bootstrap and doctor both read a project with."""
    import google.auth
    from google.auth import exceptions as auth_exc

    try:
        credentials, _ = google.auth.default()
    except auth_exc.DefaultCredentialsError:
        raise PreconditionError("no Google Cloud credentials found", CREDENTIALS_HINT) from None
    from google.cloud import (
        artifactregistry_v1,
        iam_admin_v1,
        resourcemanager_v3,
        secretmanager_v1,
        service_usage_v1,
        storage,
    )

    return credentials, {
        "service_usage": service_usage_v1.ServiceUsageClient(credentials=credentials),
        "storage": storage.Client(project=stack.project, credentials=credentials),
        "iam": iam_admin_v1.IAMClient(credentials=credentials),
        "projects": resourcemanager_v3.ProjectsClient(credentials=credentials),
        "secrets": secretmanager_v1.SecretManagerServiceClient(credentials=credentials),
        "registry": artifactregistry_v1.ArtifactRegistryClient(credentials=credentials),
    }


def open_bootstrap(stack: Stack, root: Path) -> Bootstrap:
    """A Bootstrap with the real Google clients, using Application Default Credentials (the stack's promotion
    sources are read first: a config error comes before any credentials)."""
    sources = promotion_sources(stack, root)
    _, clients = project_clients(stack)
    return Bootstrap(stack, root, sources=sources, **clients)
