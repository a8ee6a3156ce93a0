"""The release pipeline: build → migrate → deploy → smoke → promote → init.

Every stage has a read-only part (``plan_release`` computes all of them and mutates nothing; ``up
--dry-run`` and ``deployctl plan`` render it) and a mutating part run by ``release``. The rules:

- build     makes (or reuses) a content-addressed artifact per service, pins the secret versions the
            release will use (creating generated/composed secrets that do not exist yet) and prepares
            the backing services (the database and its role). Nothing serves differently yet.
- migrate   runs the migrate job to completion in the new artifact. If it fails, nothing is deployed.
- deploy    starts a candidate revision per service with no traffic and waits for its startup probe.
- smoke     checks each candidate through its own URL. If one fails, no candidate ever gets traffic.
- promote   shifts traffic in the rollout's steps, checking the service URL after each; at the end
            the service must serve 100 % from the candidate. Any failure routes traffic straight back
            to the previous revision (automatic rollback).
- init      runs the init job; unless it is marked blocking, a failure is a warning in the ledger.

A release whose source hashes, stack settings and secret versions equal the serving release's is a
no-op unless forced. Everything above is recorded in the ledger as it happens.
"""

from __future__ import annotations

import hashlib
import json
import time

from deployctl.config import SmokeCheck
from deployctl.errors import DeployctlError, StageFailed
from deployctl.pipeline import run as runmod
from deployctl.pipeline.model import Artifact, JobRun, ReleasePlan, ReleaseRecord, Revision, Split, Step
from deployctl.pipeline.run import Options, Reporter, Run
from deployctl.pipeline.smoke import run_checks, summary
from deployctl.pipeline.target import Target


def plan_release(target: Target, options: Options) -> ReleasePlan:
    """Everything ``release`` would do, computed without a single mutating call."""
    stack = target.stack
    hashes = {svc: target.source_hash(svc) for svc in stack.services}
    artifacts: dict[str, str | None] = {}
    for svc, source_hash in hashes.items():
        found = None if options.image else target.find_artifact(svc, source_hash)
        artifacts[svc] = options.image or (found.ref if found else None)
    versions = target.current_secret_versions()
    fingerprint = fingerprint_of(stack.fingerprint(), hashes, versions, options.image)
    serving = serving_release(target)
    noop = bool(serving and serving.fingerprint == fingerprint and all(versions.values()) and _healthy(target, serving))
    plan = ReleasePlan(
        stack=stack.name,
        target=target.name,
        source_hashes=hashes,
        artifacts=artifacts,
        secret_versions=versions,
        fingerprint=fingerprint,
        serving_release=serving.id if serving else None,
        noop=noop,
    )
    plan.steps = _steps(target, plan)
    return plan


def release(target: Target, options: Options, reporter: Reporter) -> ReleaseRecord:
    """Run a release under the stack's lock. Returns the ledger record; raises StageFailed on failure."""
    with runmod.locked(target, options, reporter) as lock_id:
        plan = plan_release(target, options)  # again, under the lock: another release may just have run
        if plan.noop and not options.force:
            serving = target.ledger.get(plan.serving_release or "")
            assert serving is not None
            return _noop(serving)
        run = Run(target, runmod.new_record(target, "release", options, lock_id), reporter)
        run.record.fingerprint = plan.fingerprint
        run.record.source_hash = combined_hash(plan.source_hashes)
        run.record.previous = runmod.serving_revisions(target)
        run.save()
        try:
            return _stages(run, options)
        except StageFailed as exc:
            explain_failure(run, exc)
            raise


def _stages(run: Run, options: Options) -> ReleaseRecord:
    target, record = run.target, run.record
    artifacts, versions = run.stage("build", lambda: _build(target, options))
    record.artifacts = {svc: a.ref for svc, a in artifacts.items()}
    record.secret_versions = versions
    # the plan's fingerprint predates secrets created by this build: take it again with the pinned versions
    hashes = {svc: a.source_hash for svc, a in artifacts.items()}
    record.fingerprint = fingerprint_of(target.stack.fingerprint(), hashes, dict(versions), options.image)
    record.migration_before = target.migration_head()
    run.save()
    _migrate(run, artifacts, versions)
    candidates = run.stage("deploy", lambda: deploy_candidates(target, artifacts, versions, record.id))
    record.revisions = {svc: rev.name for svc, rev in candidates.items()}
    run.save()
    try:
        run.stage("smoke", lambda: smoke_candidates(target, candidates))
    except StageFailed:
        for svc, rev in candidates.items():
            target.discard(svc, rev.name)
        raise
    run.stage("promote", lambda: promote(target, candidates, record.previous))
    _init(run, artifacts, versions)
    retire_old(target, record)
    urls = ", ".join(target.service_url(svc) for svc in candidates)
    return run.finish("succeeded", f"{', '.join(record.revisions.values())} serves {urls}")


def _build(target: Target, options: Options) -> tuple[tuple[dict[str, Artifact], dict[str, str]], str]:
    artifacts: dict[str, Artifact] = {}
    notes = []
    for svc in target.stack.services:
        source_hash = target.source_hash(svc)
        if options.image:
            artifacts[svc] = Artifact(svc, source_hash, options.image, options.image.rpartition("@")[2])
            notes.append(f"{svc}: image {options.image}")
            continue
        found = target.find_artifact(svc, source_hash)
        artifacts[svc] = found or target.build(svc, source_hash)
        notes.append(f"{svc}: {'reused' if found else 'built'} {artifacts[svc].ref}")
    versions = target.ensure_secrets()
    target.prepare(artifacts, versions)
    # secrets the infrastructure creates on its first apply (gcp: the Pulumi program) are pinned once they exist
    versions = {**{k: v for k, v in target.current_secret_versions().items() if v}, **versions}
    pinned = ", ".join(f"{name} v{v}" for name, v in sorted(versions.items()))
    return (artifacts, versions), "; ".join(notes) + (f"; secrets {pinned}" if pinned else "")


def _migrate(run: Run, artifacts: dict[str, Artifact], versions: dict[str, str]) -> None:
    target, job = run.target, run.target.stack.jobs.migrate
    if job is None:
        run.skip("migrate", "no migrate job configured")
        return

    def body() -> tuple[None, str]:
        result = target.run_job("migrate", job, artifacts[target.stack.job_service(job)], versions, run.record.id)
        if not result.succeeded:
            raise DeployctlError(
                f"migration failed after {result.attempts} attempt(s): {result.message}",
                f"Nothing was deployed. See the job log: {result.log}",
            )
        run.record.migration_after = target.migration_head()
        return None, f"{result.execution}: {run.record.migration_before or 'empty'} → {run.record.migration_after}"

    run.stage("migrate", body)


def deploy_candidates(
    target: Target, artifacts: dict[str, Artifact], versions: dict[str, str], release_id: str
) -> tuple[dict[str, Revision], str]:
    candidates: dict[str, Revision] = {}
    try:
        for svc, artifact in artifacts.items():
            candidates[svc] = target.deploy(svc, artifact, _for_service(target, svc, versions), release_id)
    except DeployctlError:
        for svc, rev in candidates.items():
            target.discard(svc, rev.name)
        raise
    return candidates, "; ".join(f"{rev.name} ready (no traffic) at {rev.url}" for rev in candidates.values())


def _for_service(target: Target, service: str, versions: dict[str, str]) -> dict[str, str]:
    """The pinned versions of the secrets a service references."""
    wanted = set(target.stack.services[service].secrets.values())
    return {name: v for name, v in versions.items() if name in wanted}


def smoke_candidates(target: Target, candidates: dict[str, Revision]) -> tuple[None, str]:
    notes = []
    for svc, rev in candidates.items():
        results = run_checks(rev.url, _checks_for(target, svc))
        if not all(r.ok for r in results):
            raise DeployctlError(f"smoke checks failed on {rev.name}: {summary(results)}")
        notes.append(f"{rev.name}: {summary(results)}")
    return None, "; ".join(notes)


def _checks_for(target: Target, service: str) -> list[SmokeCheck]:
    stack = target.stack
    return [c for c in stack.smoke if (c.service or stack.primary) == service]


def promote(target: Target, candidates: dict[str, Revision], previous: dict[str, str]) -> tuple[None, str]:
    # canary steps need something to split against: a service's first release goes straight to 100 %
    steps = target.stack.rollout.steps if previous else [100]
    try:
        for percent in steps:
            for svc, rev in candidates.items():
                old = previous.get(svc)
                splits = [Split(rev.name, percent)] + ([Split(old, 100 - percent)] if old and percent < 100 else [])
                target.set_traffic(svc, splits)
            _verify_services(target, candidates)
        for svc, rev in candidates.items():
            if not runmod.serves_fully(target, svc, rev.name):
                raise DeployctlError(f"{svc} does not serve 100 % from {rev.name} after promotion")
    except DeployctlError as exc:
        if previous:
            runmod.route_all(target, previous)
            raise DeployctlError(
                f"{exc.message}; rolled back automatically to {', '.join(previous.values())}",
                "The candidate passed its own smoke checks but failed behind the service URL.",
            ) from exc
        raise
    shown = " → ".join(f"{p}%" for p in steps)
    return None, f"{shown}; " + ", ".join(f"{svc}: 100% {rev.name}" for svc, rev in candidates.items())


def _verify_services(target: Target, candidates: dict[str, Revision]) -> None:
    for svc in candidates:
        results = run_checks(target.service_url(svc), _checks_for(target, svc))
        if not all(r.ok for r in results):
            raise DeployctlError(f"checks through {target.service_url(svc)} failed: {summary(results)}")


def _init(run: Run, artifacts: dict[str, Artifact], versions: dict[str, str]) -> None:
    target, job = run.target, run.target.stack.jobs.init
    if job is None:
        run.skip("init", "no init job configured")
        return

    def body() -> tuple[JobRun, str]:
        result = target.run_job("init", job, artifacts[target.stack.job_service(job)], versions, run.record.id)
        if result.succeeded:
            return result, f"{result.execution}: {result.message or 'succeeded'}"
        if job.blocking:
            raise DeployctlError(f"init failed: {result.message}", f"Traffic is on the new release. Log: {result.log}")
        return result, f"init failed (non-blocking): {result.message}"

    result = run.stage("init", body, status_of=lambda r: "ok" if r.succeeded else "warning")
    if not result.succeeded:
        run.reporter.warn(f"the init job failed; the release serves anyway. Log: {result.log}")


def retire_old(target: Target, record: ReleaseRecord) -> None:
    keep_n = target.stack.rollout.keep_revisions
    for svc in target.stack.services:
        keep: list[str] = []
        for rec in [record, *target.ledger.history(limit=50)]:
            rev = rec.revisions.get(svc)
            if rec.outcome in ("succeeded", "running") and rev and rev not in keep:
                keep.append(rev)
        target.retire(svc, keep[:keep_n])


def explain_failure(run: Run, exc: StageFailed) -> None:
    """Record the failure, then say where traffic is and which command recovers."""
    serving = runmod.serving_revisions(run.target)
    where = runmod.where_traffic_is(run.target, serving)
    rolled_back = "rolled back automatically" in exc.message
    run.finish("rolled_back" if rolled_back else "failed", f"failed at {exc.stage}: {exc.message}")
    stack = run.target.stack.name
    kind = {"release": "release", "rotate": "rotation", "rollback": "rollback"}[run.record.kind]
    exc.message = f"{kind} {run.record.id} failed at {exc.stage}: {exc.message}. {where}"
    retry = f"Fix the cause and run `{run.record.command}` again"
    hint = exc.hint.rstrip(".") + ". " if exc.hint else ""
    exc.hint = hint + (f"{retry}, or `deployctl rollback {stack}` to go back further." if serving else f"{retry}.")


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


def serving_release(target: Target) -> ReleaseRecord | None:
    serving = runmod.serving_revisions(target)
    if not serving:
        return None
    for record in target.ledger.history(limit=50):
        if record.outcome == "succeeded" and record.revisions == serving:
            return record
    return None


def _healthy(target: Target, record: ReleaseRecord) -> bool:
    return all(
        runmod.serves_fully(target, svc, rev) and target.revision_healthy(svc, rev)
        for svc, rev in record.revisions.items()
    )


def _steps(target: Target, plan: ReleasePlan) -> list[Step]:
    stack = target.stack
    if plan.noop:
        return [Step("all", "skip", f"nothing changed: release {plan.serving_release} serves")]
    steps = []
    for svc, ref in plan.artifacts.items():
        if ref:
            steps.append(Step("build", "reuse", f"reuse {ref}"))
        else:
            steps.append(Step("build", "run", f"build {svc} from source {plan.source_hashes[svc][:12]}"))
    for name, version in sorted(plan.secret_versions.items()):
        steps.append(Step("build", "run", f"pin secret {name} " + (f"v{version}" if version else "(create v1)")))
    migrate = stack.jobs.migrate
    if migrate:
        steps.append(Step("migrate", "run", f"run `{' '.join(migrate.command)}` (retries {migrate.retries}, "
                                            f"timeout {migrate.timeout_s}s)"))
    for svc in stack.services:
        steps.append(Step("deploy", "run", f"start a candidate revision of {svc} with no traffic"))
        checks = ", ".join(c.path for c in _checks_for(target, svc))
        steps.append(Step("smoke", "run", f"check {checks} on the candidate"))
        rollout = " → ".join(f"{p}%" for p in stack.rollout.steps)
        steps.append(Step("promote", "run", f"shift {svc} traffic {rollout} at {target.service_url(svc)}"))
    if stack.jobs.init:
        kind = "blocking" if stack.jobs.init.blocking else "non-blocking"
        steps.append(Step("init", "run", f"run `{' '.join(stack.jobs.init.command)}` ({kind})"))
    return steps


def fingerprint_of(stack_fp: str, hashes: dict[str, str], versions: dict[str, str | None], image: str | None) -> str:
    data = {"stack": stack_fp, "sources": hashes, "secrets": versions, "image": image}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def combined_hash(hashes: dict[str, str]) -> str:
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
