"""The steps every plan is built from. Each is frozen data with a read-only ``describe`` and a mutating ``run``.

Per-service steps (Build, Deploy, Smoke, Promote, Reactivate) write only their own service's entry of the
context, so the executor can run a wave of them concurrently. Stack-wide steps (PinSecrets, RunJob,
AddSecretVersion, DisableOldVersions, Retire) run alone in their wave; CheckDatabaseLogin writes nothing
and runs beside the candidates' smoke checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deployctl.config import Job, SmokeCheck, Stack
from deployctl.errors import DeployctlError
from deployctl.pipeline import migrations
from deployctl.pipeline import run as runmod
from deployctl.pipeline.model import Artifact, JobState, Split, fingerprint_of
from deployctl.pipeline.plan import Action, Context, Step, StepOutcome
from deployctl.pipeline.smoke import run_checks, summary
from deployctl.pipeline.target import Target


def checks_for(target: Target, service: str) -> list[SmokeCheck]:
    """The stack's smoke checks that belong to *service* (unassigned checks belong to the primary)."""
    stack = target.stack
    return [c for c in stack.smoke if (c.service or stack.primary) == service]


def check_service(target: Target, service: str, url: str) -> tuple[bool, str]:
    """Run *service*'s smoke checks against *url*: whether all passed, and their summary."""
    results = run_checks(url, checks_for(target, service), auth=target.smoke_auth(service))
    return all(r.ok for r in results), summary(results)


def require_checks(target: Target, service: str, url: str, failed: str) -> str:
    """Run *service*'s smoke checks against *url*; raise "<service> <failed>: <summary>" unless all pass."""
    ok, said = check_service(target, service, url)
    if not ok:
        raise DeployctlError(f"{service} {failed}: {said}")
    return said


# -- build ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Build(Step):
    """Reuse the artifact the plan found for this source, deploy the image given, or build one.

    The step runs what the plan found and looks nothing up again: ``release`` makes the plan under the
    stack's lock, moments before it runs, and no run under that lock deletes an artifact. One removed
    outside deployctl's lock in that moment (by hand, or a racing ``down --purge``) fails the first stage
    that uses it, the migrate job or the deploy (local: "artifact … is gone from this machine"), before any
    traffic moves, as when an artifact vanishes just after its build. Rebuilding here instead would hide
    that something else is changing the target's state.
    """

    service: str
    source_hash: str
    existing: Artifact | None = None  # the artifact already built from this source, found by the plan
    image: str | None = None  # --image / promote: deploy this digest, build nothing
    stage: str = "build"

    @property
    def action(self) -> Action:
        return Action.REUSE if self.existing or self.image else Action.RUN

    def describe(self) -> str:
        if self.image:
            return f"use image {self.image} for {self.service}"
        if self.existing:
            return f"reuse {self.existing.ref}"
        return f"build {self.service} from source {self.source_hash[:12]}"

    def run(self, ctx: Context) -> StepOutcome:
        target = ctx.target
        if self.image:
            artifact = Artifact(self.service, self.source_hash, self.image, self.image.rpartition("@")[2])
            ctx.artifacts[self.service] = artifact
            ctx.record.artifacts[self.service] = artifact.ref
            return StepOutcome(f"{self.service}: image {self.image}")
        artifact = self.existing or target.build(self.service, self.source_hash)
        ctx.artifacts[self.service] = artifact
        ctx.record.artifacts[self.service] = artifact.ref
        return StepOutcome(f"{self.service}: {'reused' if self.existing else 'built'} {artifact.ref}")


@dataclass(frozen=True)
class Pin:
    """One secret a release pins, as the plan found it."""

    secret: str
    version: str | None  # the version that exists now; None: this run creates v1
    composed: bool = False  # made from other values: gets a new version if one of them changed

    def describe(self) -> str:
        if self.version is None:
            return f"{self.secret} (create v1)"
        return f"{self.secret} v{self.version}" + (" (a new version if its parts changed)" if self.composed else "")


def pins_of(stack: Stack, versions: dict[str, str | None]) -> tuple[Pin, ...]:
    """The pins of *versions* (secret -> the version that exists now), in name order."""
    return tuple(Pin(name, version, stack.secrets[name].source == "composed")
                 for name, version in sorted(versions.items()))


@dataclass(frozen=True)
class PinSecrets(Step):
    """Create the secrets the plan found missing (generated, composed), prepare the backing services, and pin
    the versions the plan shows: a version planned is pinned as planned, even if another was added since;
    one planned as "create v1" is pinned once it exists (gcp: the infrastructure creates it in prepare); a
    composed secret whose parts changed is pinned at its new version, as its line says."""

    pins: tuple[Pin, ...]
    stage: str = "build"

    def describe(self) -> str:
        return "pin secrets " + ", ".join(pin.describe() for pin in self.pins) if self.pins else "no secrets to pin"

    def run(self, ctx: Context) -> StepOutcome:
        target = ctx.target
        made = target.ensure_secrets()
        versions = {pin.secret: version for pin in self.pins if (version := self._version(pin, made))}
        target.prepare(ctx.artifacts, versions)
        if missing := [pin.secret for pin in self.pins if pin.secret not in versions]:
            now = target.current_secret_versions()  # what the infrastructure created on its first apply
            versions |= {name: version for name in missing if (version := now.get(name))}
        ctx.versions = dict(sorted(versions.items()))
        ctx.record.secret_versions = dict(ctx.versions)
        # the plan's fingerprint predates secrets this step created: take it again with the pinned versions
        hashes = {svc: a.source_hash for svc, a in ctx.artifacts.items()}
        pinned_now: dict[str, str | None] = dict(ctx.versions)
        ctx.record.fingerprint = fingerprint_of(target.stack.fingerprint(), hashes, pinned_now, ctx.options.image)
        pinned = ", ".join(f"{name} v{v}" for name, v in ctx.versions.items())
        return StepOutcome(f"secrets {pinned}" if pinned else "")

    @staticmethod
    def _version(pin: Pin, made: dict[str, str]) -> str | None:
        """The version to pin, once what was missing is created: the planned one, unless the plan could not
        know it (created by this step, or recomposed)."""
        if pin.version is None or pin.composed:
            return made.get(pin.secret, pin.version)
        return pin.version


# -- jobs -----------------------------------------------------------------------------------------------
NO_TABLES = ("the job exited 0 but the stack's database has no tables: the app may be reading its database "
             "settings from a variable deployctl does not set")


def _settings_hint(stack: Stack, job: Job) -> str:
    """Name what the job's environment had: the variables of its service's env and secrets."""
    service = stack.job_service(job)
    svc = stack.services[service]
    names = ", ".join(sorted({*svc.env, *svc.secrets})) or "none"
    return (f"deployctl sets these for the job (deployctl:services.{service} env and secrets): {names}. Point "
            "the app's database settings at one of them, or add the variable it reads there. Nothing was "
            "deployed.")


@dataclass(frozen=True)
class RunJob(Step):
    """Run the migrate or init job in the release's artifact. A failed migration deploys nothing; a failed
    init is a warning unless the job is blocking."""

    kind: str  # "migrate" or "init"
    job: Job
    migrations: str | None = None  # migrate: the hash of the files it runs (migrations.files_hash), recorded

    @property
    def stage(self) -> str:  # type: ignore[override]
        return self.kind

    def describe(self) -> str:
        command = " ".join(self.job.command)
        if self.kind == "migrate":
            return f"run `{command}` (retries {self.job.retries}, timeout {self.job.timeout_s}s)"
        return f"run `{command}` ({'blocking' if self.job.blocking else 'non-blocking'})"

    def run(self, ctx: Context) -> StepOutcome:
        target, record = ctx.target, ctx.record
        artifact = ctx.artifacts[target.stack.job_service(self.job)]
        if self.kind == "migrate":
            # the ledger's head stands in only for a database that may hold it, never for one accepted as empty
            emptied = migrations.EMPTY_DATABASE in record.accepted_risks
            record.migration_before = None if emptied else migrations.database_head(target)
        result = target.run_job(self.kind, self.job, artifact, ctx.versions, record.id)
        if self.kind == "migrate":
            if not result.succeeded:
                raise DeployctlError(
                    f"migration failed after {result.attempts} attempt(s): {result.message}",
                    f"Nothing was deployed. See the job log: {result.log}",
                )
            state = target.migration_state()
            if state is not None and state.empty:
                raise DeployctlError(NO_TABLES, _settings_hint(target.stack, self.job))
            record.migration_after = (state.head if state else None) or self._head_of_source(ctx)
            record.migrations = self.migrations
            return StepOutcome(f"{result.execution}: {record.migration_before or 'empty'} → {record.migration_after}")
        if result.succeeded:
            return StepOutcome(f"{result.execution}: {result.message or 'succeeded'}")
        if result.state is JobState.RUNNING and not self.job.blocking:
            return StepOutcome(f"{result.execution}: started, not awaited (non-blocking)")
        if self.job.blocking:
            raise DeployctlError(f"init failed: {result.message}", f"Traffic is on the new release. Log: {result.log}")
        ctx.warnings.append(f"the init job failed; the release serves anyway. Log: {result.log}")
        return StepOutcome(f"init failed (non-blocking): {result.message}", "warning")

    @staticmethod
    def _head_of_source(ctx: Context) -> str | None:
        """Where the database cannot be read from here (gcp), the head of the migrations just run: the
        source's, when the release was built from it (an ``--image`` may hold other migrations)."""
        if ctx.options.image:
            return None
        return migrations.files_head(migrations.read_all(migrations.versions_dir(ctx.target.stack, ctx.options.root)))


@dataclass(frozen=True)
class KeepSchema(Step):
    """What a skipped migrate stage records (``migrations.kept``): the database stays at *head*, the head of the
    migration files hashed *files*, so the next release can tell again whether its migrations need to run."""

    head: str
    files: str
    stage: str = "migrate"

    def describe(self) -> str:
        return f"keep the database at {self.head}"

    def run(self, ctx: Context) -> StepOutcome:
        ctx.record.migration_before = ctx.record.migration_after = self.head
        ctx.record.migrations = self.files
        return StepOutcome(f"the database stays at {self.head}")


# -- candidates -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deploy(Step):
    """A candidate revision that gets no traffic, ready once its startup probe passes."""

    service: str
    stage: str = "deploy"

    def describe(self) -> str:
        return f"start a candidate revision of {self.service} with no traffic"

    def run(self, ctx: Context) -> StepOutcome:
        rev = ctx.target.deploy(self.service, ctx.artifacts[self.service], ctx.versions_for(self.service),
                                ctx.record.id)
        ctx.candidates[self.service] = rev
        ctx.record.revisions[self.service] = rev.name
        return StepOutcome(f"{rev.name} ready (no traffic) at {rev.url}")


@dataclass(frozen=True)
class Smoke(Step):
    service: str
    paths: tuple[str, ...]
    stage: str = "smoke"

    def describe(self) -> str:
        return f"check {', '.join(self.paths)} on the candidate"

    def run(self, ctx: Context) -> StepOutcome:
        rev = ctx.candidates[self.service]
        ok, said = check_service(ctx.target, self.service, rev.url)
        if not ok:
            raise DeployctlError(f"smoke checks failed on {rev.name}: {said}")
        return StepOutcome(f"{rev.name}: {said}")


@dataclass(frozen=True)
class CheckDatabaseLogin(Step):
    """Before traffic moves: connect to the database as the login of the pinned password version, with its
    password, as the revisions will (a revision's smoke checks need not touch the database)."""

    secret: str  # the database password's secret
    version: str | None = None  # None: the version this run pinned (ctx.versions)
    stage: str = "smoke"

    def describe(self) -> str:
        which = f"{self.secret} v{self.version}" if self.version else f"the pinned {self.secret} version"
        return f"log in to the database as the login of {which}"

    def run(self, ctx: Context) -> StepOutcome:
        version = self.version or ctx.versions.get(self.secret, "")
        checked = ctx.target.check_database_login({self.secret: version})
        return StepOutcome(checked or f"{self.secret} v{version}: the database is not reachable from this machine")


@dataclass(frozen=True)
class Promote(Step):
    """Shift the service's traffic to its candidate in the rollout's steps, checking the service URL after each."""

    service: str
    percents: tuple[int, ...]
    url: str
    split_with: str | None = None  # the previous revision, when it answers: it keeps the rest of the traffic
    stage: str = "promote"

    def describe(self) -> str:
        return f"shift {self.service} traffic {' → '.join(f'{p}%' for p in self.percents)} at {self.url}"

    def run(self, ctx: Context) -> StepOutcome:
        target, rev = ctx.target, ctx.candidates[self.service]
        old = self.split_with
        for percent in self.percents:
            if ctx.cancelled.is_set():
                raise DeployctlError(f"{self.service}: stopped at {percent}%, another service failed")
            rest = [Split(old, 100 - percent)] if old and percent < 100 else []
            target.set_traffic(self.service, [Split(rev.name, percent), *rest])
            url = target.service_url(self.service)
            ok, said = check_service(target, self.service, url)
            if not ok:
                raise DeployctlError(f"checks through {url} failed: {said}",
                                     "The candidate passed its own smoke checks but failed behind the service URL.")
        if not runmod.serves_fully(target, self.service, rev.name):
            raise DeployctlError(f"{self.service} does not serve 100 % from {rev.name} after promotion")
        return StepOutcome(f"{' → '.join(f'{p}%' for p in self.percents)}; {self.service}: 100% {rev.name}")


# -- rollback -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reactivate(Step):
    """Make a recorded revision able to serve again, then give it all of the service's traffic."""

    service: str
    revision: str
    stage: str = "promote"

    def describe(self) -> str:
        return f"route {self.service} 100% to {self.revision}"

    def run(self, ctx: Context) -> StepOutcome:
        target = ctx.target
        target.ensure_revision(self.service, self.revision)
        target.set_traffic(self.service, [Split(self.revision, 100)])
        require_checks(target, self.service, target.service_url(self.service), "failed its checks after the switch")
        return StepOutcome(f"{self.service}: 100% {self.revision}")


# -- secrets --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddSecretVersion(Step):
    """A new version of one secret (generated unless a value is given), then the composed secrets that use it."""

    name: str
    value: str | None = field(default=None, repr=False)  # held in memory only; no rendering shows it
    stage: str = "build"

    def describe(self) -> str:
        how = "the value given" if self.value is not None else "a generated value"
        return f"add a version of {self.name} from {how}, and recompose the secrets that use it"

    def run(self, ctx: Context) -> StepOutcome:
        version = ctx.target.add_secret_version(self.name, self.value)
        ctx.versions = ctx.target.ensure_secrets()
        ctx.record.secret_versions = dict(ctx.versions)
        return StepOutcome(f"added {self.name} v{version}")


@dataclass(frozen=True)
class DisableOldVersions(Step):
    names: tuple[str, ...]
    stage: str = "promote"

    def describe(self) -> str:
        return f"disable the old versions of {', '.join(self.names)} once the new revision serves"

    def run(self, ctx: Context) -> StepOutcome:
        def disable() -> str:
            for name in self.names:
                for version in ctx.target.disable_secret_versions(name, keep=[ctx.versions[name]]):
                    ctx.disabled.append(f"{name} v{version}")
            return f"disabled {', '.join(ctx.disabled)}" if ctx.disabled else "no old versions to disable"

        return _cleanup(ctx, "disable every old version", disable)


@dataclass(frozen=True)
class Retire(Step):
    """Release the resources of revisions beyond the rollout's ``keep_revisions`` (they stay restorable)."""

    keep: int
    stage: str = "promote"

    def describe(self) -> str:
        return f"keep the newest {self.keep} revisions of each service warm; stop the rest"

    def run(self, ctx: Context) -> StepOutcome:
        def retire() -> str:
            retire_old(ctx.target, ctx.record, self.keep)
            return ""

        return _cleanup(ctx, "stop old revisions", retire)


def _cleanup(ctx: Context, what: str, work: Callable[[], str]) -> StepOutcome:
    """Run a step that tidies up after the switch. The new revisions serve by then, so a failure here is a
    warning in the ledger, never a reason to roll back."""
    try:
        return StepOutcome(work())
    except DeployctlError as exc:
        ctx.warnings.append(f"could not {what}: {exc.message}")
        return StepOutcome(f"could not {what}: {exc.message}", "warning")


def retire_old(target: Target, record: runmod.ReleaseRecord, keep_n: int) -> None:
    for svc in target.stack.services:
        keep: list[str] = []
        for rec in [record, *target.ledger.history(limit=50)]:
            rev = rec.revisions.get(svc)
            if rec.outcome in ("succeeded", "running") and rev and rev not in keep:
                keep.append(rev)
        target.retire(svc, keep[:keep_n])
