"""doctor: a read-only preflight of a gcp stack's project, one line per check.

Each check says ``ok``, ``missing`` (with the one command that fixes it, the project's and stack's names
filled in), ``pending`` (a resource the Pulumi program creates that is not there yet: ``deployctl up STACK``
creates it; not a failure) or ``note`` (what could not be judged from here, e.g. roles held through a group).

Rules:
- Only reads: Service Usage ``services.batchGet``, IAM ``serviceAccounts.get``, Resource Manager
  ``projects.getIamPolicy``, Cloud Storage bucket get and a one-object list, Secret Manager secret get and
  version list, Artifact Registry ``repositories.get``, Cloud Build ``connections.get`` and
  ``repositories.get``, Cloud SQL Admin ``instances.get``, and an offline synthesis of the program (the
  connection budget). No secret payload is read.
- A check whose read fails (403, an API that answers nothing) is a ``missing`` line with the error's own
  hint; the other checks still run. Except another project's repository (promotion): not reading it or its
  policy is a ``note`` with the grant for that project's admins.
- The roles checked are bootstrap's (:data:`bootstrap.RELEASE_ROLES`), the APIs bootstrap's (``APIS``): one
  list each, so doctor and bootstrap cannot disagree about what a project needs.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployctl import naming
from deployctl.config import Stack
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.targets.gcp import bootstrap as boot
from deployctl.targets.gcp.retry import CREDENTIALS_HINT, RetryPolicy, caller_identity, member, read
from deployctl.targets.gcp.secrets import SecretManager

OWNER = "roles/owner"  # holds every permission of RELEASE_ROLES
PASSPHRASE_VARS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")


@dataclass(frozen=True)
class Check:
    state: str  # ok | missing | pending | note
    subject: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.state:<8}{self.subject}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "subject": self.subject, "detail": self.detail, "fix": self.fix}


@dataclass
class Report:
    stack: str
    checks: list[Check] = field(default_factory=list)

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if c.state == "missing"]

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "ok": not self.missing, "checks": [c.to_dict() for c in self.checks]}

    def error(self) -> PreconditionError:
        return PreconditionError(
            f"{len(self.missing)} of {len(self.checks)} checks of stack {self.stack} found something missing",
            f"Run the fix of each `missing` line above, then deployctl doctor {self.stack} again.",
        )


class Doctor:
    def __init__(self, stack: Stack, *, service_usage: Any, iam: Any, projects: Any, storage: Any, secrets: Any,
                 registry: Any, repositories: Any, sqladmin: Any, caller: str | None,
                 policy: RetryPolicy | None = None, environ: Mapping[str, str] | None = None,
                 which: Callable[[str], str | None] = shutil.which, sources: Sequence[Stack] = ()) -> None:
        assert stack.project and stack.region  # config validation guarantees both for gcp stacks
        self.stack, self.project, self.region = stack, stack.project, stack.region
        self.service_usage, self.iam, self.projects, self.storage = service_usage, iam, projects, storage
        self.registry, self.repositories, self.sqladmin = registry, repositories, sqladmin
        self.caller = caller
        self.sources = list(sources)  # boot.promotion_sources: the stacks promoted here from another project
        self.policy = policy or RetryPolicy()
        self.environ = os.environ if environ is None else environ
        self.which = which
        self.secrets = SecretManager.of_stack(secrets, stack, self.policy)
        self.build_email = f"{boot.build_account(stack)}@{self.project}.iam.gserviceaccount.com"
        self._iam_policy: Any = None
        self._instance: dict[str, Any] | None = None
        self._instance_read = False  # instances.get answered (the instance may still be absent)

    # -- the run ----------------------------------------------------------------------------------
    def run(self, progress: Callable[[str], None] = lambda line: None) -> Report:
        report = Report(self.stack.name)
        checks: list[tuple[str, Callable[[], list[Check]]]] = [
            ("pulumi", self._pulumi), ("apis", self._apis), ("deployer", self._deployer),
            ("trigger identity", self._build_identity), ("state bucket", self._state_bucket),
            ("passphrase", self._passphrase), ("image repository", self._registry),
            ("trigger repository", self._trigger_repository), ("secrets", self._secrets),
            ("database", self._database), ("connection budget", self._budget),
            *((f"promotion from {source.name}", lambda source=source: self._pull(source))
              for source in self.sources),
        ]
        for subject, check in checks:
            try:
                found = check()
            except DeployctlError as exc:  # a read that failed: say so, keep checking the rest
                found = [Check("missing", subject, f"could not check ({exc.message})", exc.hint)]
            for one in found:
                report.checks.append(one)
                progress(one.line())
        return report

    @property
    def _up(self) -> str:
        return f"deployctl up {self.stack.name}"

    @property
    def _bootstrap(self) -> str:
        return f"deployctl bootstrap {self.stack.name}"

    # -- tools, APIs, identities -----------------------------------------------------------------------
    def _pulumi(self) -> list[Check]:
        if self.which("pulumi") is None:
            return [Check("missing", "pulumi", "the pulumi CLI is not installed (deployctl drives it)",
                          "curl -fsSL https://get.pulumi.com | sh")]
        return [Check("ok", "pulumi", "the pulumi CLI is installed")]

    def _apis(self) -> list[Check]:
        disabled = boot.disabled_apis(self.service_usage, self.project, self.policy)
        if disabled:
            return [Check("missing", "apis", f"{', '.join(disabled)} not enabled in {self.project}",
                          f"gcloud services enable {' '.join(disabled)} --project={self.project}")]
        return [Check("ok", "apis", f"all {len(boot.APIS)} APIs the stack and bootstrap need are enabled")]

    def _project_policy(self) -> Any:
        if self._iam_policy is None:
            self._iam_policy = boot.project_policy(self.projects, self.project, self.policy)
        return self._iam_policy

    def _deployer(self) -> list[Check]:
        """Whoever runs doctor: a release from this machine runs as them."""
        if not self.caller:
            return [Check("note", "deployer", "the active credentials do not name their account; its roles "
                                              "were not checked")]
        held = boot.held_roles(self._project_policy(), member(self.caller))
        if OWNER in held:
            return [Check("ok", "deployer", f"{self.caller} holds {OWNER} on {self.project}")]
        lacking = [r for r in boot.RELEASE_ROLES if r not in held]
        if not lacking:
            return [Check("ok", "deployer", f"{self.caller} holds the {len(boot.RELEASE_ROLES)} release roles")]
        return [Check("note", "deployer",
                      f"{self.caller} does not hold {', '.join(lacking)} directly on {self.project}; roles "
                      "through a group, folder or organization are not visible here (a release from this "
                      "machine needs them; Cloud Build releases as the trigger identity)")]

    def _build_identity(self) -> list[Check]:
        if boot.get_account(self.iam, self.project, self.build_email, self.policy) is None:
            return [Check("missing", "trigger identity", f"service account {self.build_email} does not exist",
                          self._bootstrap)]
        held = boot.held_roles(self._project_policy(), f"serviceAccount:{self.build_email}")
        lacking = [r for r in boot.RELEASE_ROLES if r not in held]
        if lacking:
            return [Check("missing", "trigger identity", f"{self.build_email} lacks {', '.join(lacking)} on "
                                                         f"{self.project}", self._bootstrap)]
        return [Check("ok", "trigger identity", f"{self.build_email} holds the {len(boot.RELEASE_ROLES)} "
                                                "release roles")]

    def _pull(self, source: Stack) -> list[Check]:
        """`deployctl promote SOURCE <this>` needs this project's Cloud Run Service Agent to read SOURCE's images."""
        subject = f"promotion from {source.name}"
        repository = boot.image_repository(source)
        pull = boot.RepositoryPull(self.registry, repository,
                                   lambda: boot.run_agent(self.projects, self.project, self.policy), self.policy)
        try:
            if not pull.exists():
                return [Check("note", subject, f"{repository} does not exist yet (the first `deployctl up "
                                               f"{source.name}` makes it); the grant comes after it",
                              f"deployctl up {source.name}, then {self._bootstrap}")]
            granted = pull.granted()
        except boot.UncheckedError as exc:  # another project's repository, or its policy: often not ours to read
            return [Check("note", subject, exc.message, exc.hint)]
        agent = pull.member.removeprefix("serviceAccount:")
        if not granted:
            return [Check("missing", subject, f"{agent} (Cloud Run in {self.project}) cannot read {repository}: "
                                              "a promoted image would not import", self._bootstrap)]
        return [Check("ok", subject, f"{agent} reads {repository}")]

    # -- state: bucket and passphrase ------------------------------------------------------------------
    def _state_bucket(self) -> list[Check]:
        name = self.stack.state_bucket
        bucket = read(lambda: self.storage.lookup_bucket(name), f"read gs://{name}", self.policy)
        if bucket is None:
            return [Check("missing", "state bucket", f"gs://{name} does not exist", self._bootstrap)]
        if not boot.bucket_secure(bucket):
            return [Check("missing", "state bucket", f"gs://{name} lacks uniform access, public access "
                                                     "prevention or versioning", self._bootstrap)]
        prefix = f"deployctl/{self.stack.name}/"

        def readable() -> bool:  # objects.list: what reading the ledger and the lock needs
            from google.api_core import exceptions as gexc

            try:
                list(self.storage.list_blobs(name, prefix=prefix, max_results=1))
            except gexc.Forbidden:  # 403, PermissionDenied included
                return False
            return True

        if not read(readable, f"list gs://{name}/{prefix}", self.policy):
            who = member(self.caller)
            fix = (f"gcloud storage buckets add-iam-policy-binding gs://{name} --member={who} "
                   "--role=roles/storage.objectAdmin") if who else CREDENTIALS_HINT
            return [Check("missing", "state bucket", f"gs://{name} exists, but {self.caller or 'the caller'} "
                                                     "cannot list its objects", fix)]
        return [Check("ok", "state bucket", f"gs://{name} exists, is secured and readable")]

    def _passphrase(self) -> list[Check]:
        set_here = [v for v in PASSPHRASE_VARS if self.environ.get(v)]
        if set_here:
            return [Check("ok", "passphrase", f"{set_here[0]} is set (the secret is not needed)")]
        secret = self.secrets.secret_id(boot.PASSPHRASE_SECRET)
        if not self.secrets.exists(boot.PASSPHRASE_SECRET):
            return [Check("missing", "passphrase", f"secret {secret} does not exist and PULUMI_CONFIG_PASSPHRASE "
                                                   "is not set", self._bootstrap)]
        states = self.secrets.states(boot.PASSPHRASE_SECRET)
        if "enabled" in states.values():
            return [Check("ok", "passphrase", f"secret {secret} has an enabled version")]
        return [Check("missing", "passphrase", f"secret {secret} has no enabled version",
                      self._enable(secret, states) or "export PULUMI_CONFIG_PASSPHRASE=<the stack's passphrase>")]

    def _enable(self, secret_id: str, states: dict[str, str]) -> str | None:
        disabled = [v for v, state in states.items() if state == "disabled"]
        if not disabled:
            return None
        return f"gcloud secrets versions enable {disabled[-1]} --secret={secret_id} --project={self.project}"

    # -- what the program creates ----------------------------------------------------------------------
    def _registry(self) -> list[Check]:
        repo = naming.repository(self.stack)
        if not boot.repository_exists(self.registry, boot.image_repository(self.stack), self.policy):
            return [Check("pending", "image repository", f"{self.region}/{repo} not yet created — {self._up} "
                                                         "creates it")]
        return [Check("ok", "image repository", f"{self.region}/{repo} exists")]

    def _trigger_repository(self) -> list[Check]:
        trigger = self.stack.gcp.trigger
        if trigger is None:
            return [Check("ok", "trigger repository", "no trigger in the stack (gcp.trigger unset): releases run "
                                                      "where deployctl up runs")]
        parts = trigger.repository.split("/")  # projects/P/locations/L/connections/C/repositories/R
        location, conn, repo = parts[3], parts[5], parts[7]
        connection = read(lambda: self._get(self.repositories.get_connection, "/".join(parts[:6])),
                          f"read Cloud Build connection {conn}", self.policy)
        where = f"--region={location} --project={parts[1]}"
        if connection is None:
            return [Check("missing", "trigger repository", f"Cloud Build connection {conn} does not exist in "
                                                           f"{location}",
                          f"gcloud builds connections create github {conn} {where}")]
        stage = connection.installation_state.stage.name
        if stage != "COMPLETE":
            return [Check("missing", "trigger repository", f"connection {conn} is not ready ({stage})",
                          f"gcloud builds connections describe {conn} {where} (open installationState.actionUri)")]
        if read(lambda: self._get(self.repositories.get_repository, trigger.repository),
                f"read Cloud Build repository {repo}", self.policy) is None:
            return [Check("missing", "trigger repository", f"repository {repo} is not linked in connection {conn}",
                          f"gcloud builds repositories create {repo} --connection={conn} {where} "
                          f"--remote-uri=https://github.com/OWNER/{repo}.git")]
        return [Check("ok", "trigger repository", f"{repo} is linked through connection {conn} ({location})")]

    def _get(self, method: Callable[..., Any], name: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return method(name=name, timeout=self.policy.call_timeout_s)
        except gexc.NotFound:
            return None

    def _secrets(self) -> list[Check]:
        checks = []
        for name, secret in sorted(self.stack.secrets.items()):
            sid = self.secrets.secret_id(name)
            if not self.secrets.exists(name):
                checks.append(Check("pending", f"secret {name}", f"{sid} not yet created — {self._up} creates it"))
                continue
            states = self.secrets.states(name)
            enabled = [v for v, state in states.items() if state == "enabled"]
            if enabled:
                checks.append(Check("ok", f"secret {name}", f"{sid} v{enabled[-1]} enabled"))
                continue
            if secret.source == "provided":
                fix = f"deployctl secrets set {self.stack.name} {name} < file-with-the-value"
            elif secret.source == "generated":
                fix = self._up  # a generated secret without an enabled version gets a new one
            else:
                fix = self._enable(sid, states) or self._up
            checks.append(Check("missing", f"secret {name}", f"{sid} has no enabled version", fix))
        return checks

    def _read_instance(self) -> dict[str, Any] | None:
        from google.api_core import exceptions as gexc

        from deployctl.targets.gcp.sql_users import _call

        def call() -> dict[str, Any] | None:
            try:
                request = self.sqladmin.instances().get(project=self.project, instance=naming.instance(self.stack))
                found: dict[str, Any] = _call(request.execute)
            except gexc.NotFound:
                return None
            return found

        return read(call, f"read Cloud SQL instance {naming.instance(self.stack)}", self.policy)

    def _database(self) -> list[Check]:
        if self.stack.database is None:
            return []
        name = naming.instance(self.stack)
        self._instance = self._read_instance()
        self._instance_read = True
        if self._instance is None:
            return [Check("pending", "database", f"Cloud SQL instance {name} not yet created — {self._up} creates "
                                                 "it")]
        state = self._instance.get("state", "SQL_INSTANCE_STATE_UNSPECIFIED")
        settings = self._instance.get("settings", {})
        where = f"--project={self.project}"
        if state != "RUNNABLE":
            return [Check("missing", "database", f"{name} is {state}, not RUNNABLE",
                          f"gcloud sql instances describe {name} {where}")]
        # sqladmin v1, Settings.activationPolicy: NEVER is an instance its owner stopped (state stays RUNNABLE)
        if settings.get("activationPolicy") == "NEVER":
            return [Check("missing", "database", f"{name} is stopped (activation policy NEVER)",
                          f"gcloud sql instances patch {name} --activation-policy=ALWAYS {where}")]
        return [Check("ok", "database", f"{name} is RUNNABLE ({settings.get('tier', 'tier unknown')})")]

    def _budget(self) -> list[Check]:
        """The policy rule sql-connection-budget over the synthesized program, with the real instance's tier
        and database flags (so a max_connections flag set on the instance counts)."""
        if self.stack.database is None:
            return []
        from deployctl.infra.policies import rules
        from deployctl.targets.gcp.synth import synthesize

        resources = [r.to_dict() for r in synthesize(self.stack).resources]
        source = ("the stack's tier: the instance is not created yet" if self._instance_read
                  else "the stack's tier: the instance could not be read")
        if self._instance is not None:
            real = self._instance.get("settings", {})
            for r in (r for r in resources if r["type"] == rules.INSTANCE):
                r["inputs"] = copy.deepcopy(r["inputs"])
                settings = r["inputs"].setdefault("settings", {})
                settings["tier"] = real.get("tier", settings.get("tier"))
                settings["databaseFlags"] = [{"name": f["name"], "value": f["value"]}
                                             for f in real.get("databaseFlags", [])]
            source = "the instance's tier and flags"
        rule = rules.BY_ID["sql-connection-budget"]
        failing = rule.evaluate(resources, self.stack)
        if failing:
            return [Check("missing", "connection budget", f"{failing[0].message} ({source})",
                          f"{rule.remediation.rstrip('.')}; then {self._up}")]
        needed, limit, _ = rules.connection_budget(resources)
        return [Check("ok", "connection budget", f"workloads may open {needed} of {limit} connections ({source})")]


def open_doctor(stack: Stack, root: Path) -> Doctor:
    """A Doctor with the real Google clients, using Application Default Credentials."""
    from google.cloud.devtools import cloudbuild_v2

    from deployctl.targets.gcp.sql_users import sqladmin_client

    sources = boot.promotion_sources(stack, root)  # a config error before any credentials
    credentials, clients = boot.project_clients(stack)
    policy = RetryPolicy()
    return Doctor(
        stack,
        **clients,
        repositories=cloudbuild_v2.RepositoryManagerClient(credentials=credentials),
        sqladmin=sqladmin_client(credentials, policy.call_timeout_s),
        caller=caller_identity(credentials),
        policy=policy,
        sources=sources,
    )
