"""The release: build → migrate → deploy → smoke → promote → init, as a plan made once and then executed.

``plan_release`` makes the plan without a single mutating call; ``up --dry-run`` and ``deployctl plan``
render it, and ``release`` makes it again under the stack's lock and executes exactly that object. The
rules of each stage:

- build     makes (or reuses) a content-addressed artifact per service, all services at once; then pins
            the secret versions the release will use (creating generated/composed secrets that do not
            exist yet) and prepares the backing services (the database and its role). Nothing serves
            differently yet.
- migrate   runs the migrate job to completion in the new artifact. If it fails, nothing is deployed. It
            is skipped when the serving release ran it on the same migration files and the database is still
            at their head, as that release left it (deployctl.pipeline.migrations, ``kept``).
- deploy    starts a candidate revision per service, all at once, with no traffic, and waits for each
            startup probe. If one fails, every candidate is discarded.
- smoke     checks each candidate through its own URL. If one fails, no candidate ever gets traffic.
- promote   shifts each service's traffic in the rollout's steps, all services together, checking the
            service URL after each; at the end each service serves 100 % from its candidate. Any failure
            routes every service straight back to its previous revision (automatic rollback). Then
            revisions beyond ``keep_revisions`` are stopped.
- init      runs the init job; unless it is marked blocking, a failure is a warning in the ledger.

A release whose source hashes, stack settings and secret versions equal the serving release's is a
no-op unless forced. Every stage is recorded in the ledger as it ends. The plan carries the migration
lint's warnings (deployctl.pipeline.migrations): what the pending migrations do that the serving release's
code may not survive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

from deployctl.config import Stack
from deployctl.pipeline import health, migrations
from deployctl.pipeline import run as runmod
from deployctl.pipeline.executor import Executor, finish
from deployctl.pipeline.migrations import check_data_kept
from deployctl.pipeline.model import Artifact, ReleaseRecord, combined_hash, fingerprint_of
from deployctl.pipeline.plan import Context, Facts, Plan, PlanKind, Stage, Step
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.steps import (
    Build,
    CheckDatabaseLogin,
    Deploy,
    KeepSchema,
    Pin,
    PinSecrets,
    Promote,
    Retire,
    RunJob,
    Smoke,
    checks_for,
    pins_of,
)
from deployctl.pipeline.target import Target


@dataclass(frozen=True)
class ReleaseFacts(Facts):
    """What a release plan was made from: the record of the release takes its fingerprint, source hash and
    what served before from here."""

    kind: ClassVar[PlanKind] = "release"
    source_hashes: dict[str, str]  # service -> the hash of its source
    secret_versions: dict[str, str | None]  # the versions a release would pin now (None: created by this run)
    fingerprint: str
    serving_release: str | None  # the release that serves now
    previous: dict[str, str]  # service -> the revision that serves now

    @property
    def source_hash(self) -> str:
        return combined_hash(self.source_hashes)


@dataclass(frozen=True)
class HealFacts(ReleaseFacts):
    """A no-change ``up`` over a stack whose serving release does not answer: the same facts, another plan."""

    kind: ClassVar[PlanKind] = "heal"


def plan_release(target: Target, options: Options) -> Plan[ReleaseFacts]:
    """Everything ``release`` would do, computed without a single mutating call."""
    stack = target.stack
    hashes = {svc: target.source_hash(svc) for svc in stack.services}
    versions = target.current_secret_versions()
    fingerprint = fingerprint_of(stack.fingerprint(), hashes, versions, options.image)
    serving = runmod.serving_release(target)
    previous = runmod.serving_revisions(target)
    facts = ReleaseFacts(hashes, versions, fingerprint, serving.id if serving else None, previous)
    plan = Plan(stack.name, target.name, facts)
    unchanged = bool(serving and serving.fingerprint == fingerprint and all(versions.values()))
    if unchanged and serving and not options.force and _serves_fully(target, serving):
        found = health.check(target, serving.revisions)
        if found.answers:
            plan.noop, plan.reason = True, f"nothing changed: release {serving.id} serves"
        else:  # nothing changed, but what serves does not answer: never "nothing changed" over it
            heal = HealFacts(hashes, versions, fingerprint, serving.id, previous)
            plan = Plan[ReleaseFacts](stack.name, target.name, heal, warnings=found.problems())
            plan.stages = heal_stages(target, serving, found, _builds(target, hashes, options, found.dead_revisions))
        return plan
    head = target.migration_head()  # read once: the lint and the migrate stage's rule both need it
    plan.warnings = [finding.message() for finding in migrations.pending_findings(target, options.root, head)]
    plan.stages = [
        Stage("build", [_builds(target, hashes, options, hashes), [PinSecrets(pins_of(stack, versions))]]),
        migrate_stage(target, options, serving, head),
        *candidate_stages(target, list(stack.services), previous),
        job_stage(stack, "init"),
    ]
    return plan


def _builds(target: Target, hashes: dict[str, str], options: Options, services: Iterable[str]) -> list[Step]:
    builds: list[Step] = []
    for svc in services:
        found = None if options.image else target.find_artifact(svc, hashes[svc])
        builds.append(Build(svc, hashes[svc], existing=found, image=options.image))
    return builds


def heal_stages(target: Target, serving: ReleaseRecord, found: health.Health, builds: list[Step]) -> list[Stage]:
    """What a no-change ``up`` does when what serves does not answer (deployctl.pipeline.health): start the
    database; replace each dead revision by a new one of the serving release's artifact (deploy → smoke →
    straight to 100 %, nothing alive to split with); restart each dead front end and check its URL."""
    pins = tuple(sorted(serving.secret_versions.items()))  # exactly what served: nothing is created or repinned
    build: list[list[Step]] = [[health.StartDatabase(pins)]] if found.database is False else []
    routers: list[Step] = [health.RestartRouter(svc, target.service_url(svc)) for svc in found.routers_down]
    if not found.dead_revisions:
        return [Stage("build", build), Stage("promote", [routers])] if build else [Stage("promote", [routers])]
    deploy, smoke, promote = candidate_stages(target, list(found.dead_revisions), serving.revisions)
    waves = [promote.waves[0], *([routers] if routers else []), *promote.waves[1:]]
    pin = PinSecrets(tuple(Pin(name, version) for name, version in pins))
    return [Stage("build", [*build, builds, [pin]]), deploy, smoke, replace(promote, waves=waves)]


def job_stage(stack: Stack, kind: str) -> Stage:
    job = stack.jobs.migrate if kind == "migrate" else stack.jobs.init
    if job is None:
        return Stage(kind, skip_reason=f"no {kind} job configured")
    return Stage(kind, [[RunJob(kind, job)]])


def migrate_stage(target: Target, options: Options, serving: ReleaseRecord | None, head: str | None) -> Stage:
    """The migrate job's stage: skipped, keeping the database at *head*, when ``migrations.kept`` says so."""
    stack = target.stack
    if stack.jobs.migrate is None:
        return job_stage(stack, "migrate")
    files = None if options.image else migrations.files_hash(stack, options.root)  # an image holds its own
    reason = migrations.kept(files, head, serving, options.root, stack)
    if reason and files and head:
        return Stage("migrate", skip_reason=reason, on_skip=KeepSchema(head, files))
    return Stage("migrate", [[RunJob("migrate", stack.jobs.migrate, files)]])


def candidate_stages(target: Target, services: list[str], previous: dict[str, str]) -> list[Stage]:
    """deploy → smoke → promote for *services*: what a release, a promotion and a rotation share."""
    stack = target.stack
    # canary steps need something alive to split against: a service's first release, or one whose previous
    # revision does not answer, goes straight to 100 %; a failure routes back only onto what answers
    back = health.fallbacks(target, previous)
    split = {svc: rev for svc, rev in previous.items() if back.get(svc) == rev}
    promote = [
        Promote(svc, tuple(stack.rollout.steps) if split.get(svc) else (100,), target.service_url(svc),
                split.get(svc))
        for svc in services
    ]
    # one wave: the database login writes nothing and checks what the candidates' checks do not, so it
    # runs beside them (it was a wave of its own, on the critical path)
    smoke: list[Step] = [Smoke(svc, tuple(c.path for c in checks_for(target, svc))) for svc in services]
    if stack.database:
        smoke.append(CheckDatabaseLogin(stack.database.password_secret))
    return [
        Stage("deploy", [[Deploy(svc) for svc in services]], undo=(discard_candidates,)),
        Stage("smoke", [smoke], undo=(discard_candidates,)),
        Stage("promote", [promote, [Retire(stack.rollout.keep_revisions)]],
              undo=(health.RouteBack(tuple(sorted(back.items()))), discard_unrouted)),
    ]


def recorded_artifacts(record: ReleaseRecord) -> dict[str, Artifact]:
    """The artifacts a release deployed, to deploy again with no build (a rotation, a repinned rollback)."""
    return {svc: Artifact(svc, record.source_hash or "", ref, "") for svc, ref in record.artifacts.items()}


def discard_candidates(ctx: Context) -> str | None:
    """Undo of deploy and smoke: the candidates never get traffic; stop them."""
    for svc, rev in ctx.candidates.items():
        ctx.target.discard(svc, rev.name)
    return None


def discard_unrouted(ctx: Context) -> str | None:
    """After a failed traffic switch was routed back: stop the candidates that get no traffic (a failed
    candidate is never left running as ready)."""
    for svc, rev in ctx.candidates.items():
        if not any(s.revision == rev.name and s.percent for s in ctx.target.traffic(svc)):
            ctx.target.discard(svc, rev.name)
    return None


def release(target: Target, options: Options, reporter: Reporter) -> ReleaseRecord:
    """Make the plan under the stack's lock and execute it. Returns the ledger record; raises StageFailed."""
    with runmod.locked(target, options, reporter) as lock_id:
        plan = plan_release(target, options)  # again, under the lock: another release may just have run
        serving = target.ledger.get(plan.facts.serving_release or "")
        if plan.noop:
            assert serving is not None
            return _noop(serving)
        # a heal starts a stopped database: never one that lost the data the ledger says it had
        accepted = check_data_kept(target, options.accept_empty_database)
        if plan.kind == "heal" and not accepted:
            assert serving is not None
            return _heal(target, plan, serving, options, reporter, lock_id)
        if plan.kind == "heal":  # its data accepted as lost: a heal would migrate nothing, a release does
            options = replace(options, force=True)
            plan = plan_release(target, options)
        record = runmod.new_record(target, "release", options, lock_id)
        record.accepted_risks += accepted
        runmod.refuse_older_commit(target, record, options.root)
        record.fingerprint = plan.facts.fingerprint
        record.source_hash = plan.facts.source_hash
        record.previous = dict(plan.facts.previous)
        target.ledger.save(record)
        ctx = Context(target, record, options, previous=dict(record.previous))
        for warning in plan.warnings:
            reporter.warn(warning)
        Executor(reporter).execute(plan, ctx)
        for warning in ctx.warnings:
            reporter.warn(warning)
        urls = ", ".join(target.service_url(svc) for svc in ctx.candidates)
        return finish(target, record, "succeeded", f"{', '.join(record.revisions.values())} serves {urls}")


def _noop(serving: ReleaseRecord) -> ReleaseRecord:
    return ReleaseRecord(
        id=serving.id,
        stack=serving.stack,
        kind="release",
        started=time.time(),
        command="",
        revisions=serving.revisions,
        outcome="noop",
        message=f"nothing changed: release {serving.id} ({', '.join(serving.revisions.values())}) serves",
    )


def _serves_fully(target: Target, record: ReleaseRecord) -> bool:
    return all(runmod.serves_fully(target, svc, rev) for svc, rev in record.revisions.items())


def _heal(target: Target, plan: Plan, serving: ReleaseRecord, options: Options, reporter: Reporter,
          lock_id: str) -> ReleaseRecord:
    """Execute a heal plan: a record of kind ``heal`` that serves the serving release's code and pins, with
    its dead revisions replaced; rolling back from it goes where rolling back from that release would."""
    record = runmod.new_record(target, "heal", options, lock_id)
    # what served before it is what it mends: an interrupted heal is settled back onto those revisions
    # where they still serve, and a rollback from it walks on from the release it mended
    record.previous, record.revisions = dict(serving.revisions), dict(serving.revisions)
    record.artifacts, record.secret_versions = dict(serving.artifacts), dict(serving.secret_versions)
    record.source_hash, record.fingerprint = serving.source_hash, serving.fingerprint
    target.ledger.save(record)
    for warning in plan.warnings:
        reporter.warn(warning)
    ctx = Context(target, record, options, previous=dict(serving.revisions))
    Executor(reporter).execute(plan, ctx)
    record.fingerprint = serving.fingerprint  # PinSecrets took it again from the same inputs
    state = target.migration_state()  # what the database says where it can be read; else what the ledger says
    record.migration_before = record.migration_after = state.head if state else serving.migration_after
    done = [f"started the database of {target.stack.name}"] * any(
        isinstance(step, health.StartDatabase) for stage in plan.stages for step in stage.steps)
    done += [f"restarted the router of {step.service}" for stage in plan.stages for step in stage.steps
             if isinstance(step, health.RestartRouter)]
    done += [f"replaced dead revision {serving.revisions[svc]} with {rev.name}" for svc, rev in ctx.candidates.items()]
    return finish(target, record, "succeeded", "healed: " + "; ".join(done))
