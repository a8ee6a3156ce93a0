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

from deployctl.config import Stack
from deployctl.pipeline import migrations
from deployctl.pipeline import run as runmod
from deployctl.pipeline.executor import Executor, finish
from deployctl.pipeline.model import Artifact, ReleaseRecord, combined_hash, fingerprint_of
from deployctl.pipeline.plan import Context, Plan, Stage, Step
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.steps import (
    Build,
    CheckDatabaseLogin,
    Deploy,
    KeepSchema,
    PinSecrets,
    Promote,
    Retire,
    RunJob,
    Smoke,
    checks_for,
)
from deployctl.pipeline.target import Target


def plan_release(target: Target, options: Options) -> Plan:
    """Everything ``release`` would do, computed without a single mutating call."""
    stack = target.stack
    hashes = {svc: target.source_hash(svc) for svc in stack.services}
    versions = target.current_secret_versions()
    fingerprint = fingerprint_of(stack.fingerprint(), hashes, versions, options.image)
    serving = runmod.serving_release(target)
    previous = runmod.serving_revisions(target)
    facts = {"source_hashes": hashes, "secret_versions": versions, "fingerprint": fingerprint,
             "serving_release": serving.id if serving else None, "previous": previous}
    plan = Plan("release", stack.name, target.name, facts=facts)
    unchanged = bool(serving and serving.fingerprint == fingerprint and all(versions.values()))
    if unchanged and serving and not options.force and _healthy(target, serving):
        plan.noop, plan.reason = True, f"nothing changed: release {serving.id} serves"
        return plan
    head = target.migration_head()  # read once: the lint and the migrate stage's rule both need it
    plan.warnings = [finding.message() for finding in migrations.pending_findings(target, options.root, head)]
    builds = []
    for svc, source_hash in hashes.items():
        found = None if options.image else target.find_artifact(svc, source_hash)
        builds.append(Build(svc, source_hash, existing=found.ref if found else None, image=options.image))
    plan.stages = [
        Stage("build", [builds, [PinSecrets(tuple(sorted(versions.items())))]]),
        migrate_stage(target, options, serving, head),
        *candidate_stages(target, list(stack.services), previous),
        job_stage(stack, "init"),
    ]
    return plan


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
    # canary steps need something to split against: a service's first release goes straight to 100 %
    promote = [
        Promote(svc, tuple(stack.rollout.steps) if previous.get(svc) else (100,), target.service_url(svc))
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
        Stage("promote", [promote, [Retire(stack.rollout.keep_revisions)]], undo=(route_back,)),
    ]


def recorded_artifacts(record: ReleaseRecord) -> dict[str, Artifact]:
    """The artifacts a release deployed, to deploy again with no build (a rotation, a repinned rollback)."""
    return {svc: Artifact(svc, record.source_hash or "", ref, "") for svc, ref in record.artifacts.items()}


def discard_candidates(ctx: Context) -> str | None:
    """Undo of deploy and smoke: the candidates never get traffic; stop them."""
    for svc, rev in ctx.candidates.items():
        ctx.target.discard(svc, rev.name)
    return None


def route_back(ctx: Context) -> str | None:
    """Undo of promote: every service goes straight back to the revision that served before."""
    if not ctx.previous:
        return None
    runmod.route_all(ctx.target, ctx.previous)
    ctx.rolled_back = True
    return f"rolled back automatically to {', '.join(ctx.previous.values())}"


def release(target: Target, options: Options, reporter: Reporter) -> ReleaseRecord:
    """Make the plan under the stack's lock and execute it. Returns the ledger record; raises StageFailed."""
    with runmod.locked(target, options, reporter) as lock_id:
        plan = plan_release(target, options)  # again, under the lock: another release may just have run
        if plan.noop:
            serving = target.ledger.get(plan.facts["serving_release"] or "")
            assert serving is not None
            return _noop(serving)
        record = runmod.new_record(target, "release", options, lock_id)
        runmod.refuse_older_commit(target, record, options.root)
        record.fingerprint = plan.facts["fingerprint"]
        record.source_hash = combined_hash(plan.facts["source_hashes"])
        record.previous = dict(plan.facts["previous"])
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


def _healthy(target: Target, record: ReleaseRecord) -> bool:
    return all(
        runmod.serves_fully(target, svc, rev) and target.revision_healthy(svc, rev)
        for svc, rev in record.revisions.items()
    )
