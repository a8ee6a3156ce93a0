"""Rollback: route traffic back to the revisions of an earlier release.

Rule: no build, no migration, no infrastructure change: make sure the recorded revisions can serve, then
one traffic update per service, then check the service URL. If that check fails, traffic goes back to
what served before. Schema changes are not reverted (see docs/runbook.md: expand/contract).
"""

from __future__ import annotations

from deployctl.errors import DeployctlError
from deployctl.pipeline import run as runmod
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.run import Options, Reporter, Run
from deployctl.pipeline.smoke import run_checks, summary
from deployctl.pipeline.target import Target

_SERVED = ("succeeded",)


def choose(target: Target, to: str | None) -> ReleaseRecord:
    """Read-only: the release to roll back to (``to``, or the last good one before what serves now)."""
    serving = runmod.serving_revisions(target)
    history = target.ledger.history(limit=200)
    stack = target.stack.name
    if to:
        record = target.ledger.get(to)
        if record is None or not record.stack:
            raise DeployctlError(f"no release {to} in the {stack} ledger", f"See `deployctl releases {stack}`.")
        if record.outcome not in _SERVED or not record.revisions:
            raise DeployctlError(
                f"release {to} never served (outcome: {record.outcome})",
                f"Pick a succeeded release from `deployctl releases {stack}`.",
            )
        return record
    for record in history:
        if record.outcome in _SERVED and record.revisions and record.revisions != serving:
            return record
    raise DeployctlError(f"no earlier release of {stack} to roll back to", f"See `deployctl releases {stack}`.")


def rollback(target: Target, to: str | None, options: Options, reporter: Reporter) -> ReleaseRecord:
    with runmod.locked(target, options, reporter) as lock_id:
        goal = choose(target, to)
        run = Run(target, runmod.new_record(target, "rollback", options, lock_id), reporter)
        record = run.record
        record.previous = runmod.serving_revisions(target)
        record.revisions = dict(goal.revisions)
        record.artifacts = dict(goal.artifacts)
        record.secret_versions = dict(goal.secret_versions)
        record.source_hash, record.fingerprint = goal.source_hash, goal.fingerprint
        record.migration_before = record.migration_after = target.migration_head()
        run.save()
        try:
            run.stage("promote", lambda: _route(target, goal, record.previous))
        except DeployctlError as exc:
            run.finish("failed", exc.message)
            exc.message = f"rollback to {goal.id} failed: {exc.message}. " + runmod.where_traffic_is(
                target, runmod.serving_revisions(target)
            )
            raise
        revisions = ", ".join(goal.revisions.values())
        return run.finish("succeeded", f"rolled back to release {goal.id} ({revisions})")


def _route(target: Target, goal: ReleaseRecord, previous: dict[str, str]) -> tuple[None, str]:
    for svc, revision in goal.revisions.items():
        target.ensure_revision(svc, revision)
    runmod.route_all(target, goal.revisions)
    for svc in goal.revisions:
        checks = [c for c in target.stack.smoke if (c.service or target.stack.primary) == svc]
        results = run_checks(target.service_url(svc), checks)
        if not all(r.ok for r in results):
            if previous:
                runmod.route_all(target, previous)
            raise DeployctlError(f"{svc} failed its checks after the switch: {summary(results)}")
    return None, ", ".join(f"{svc}: 100% {rev}" for svc, rev in goal.revisions.items())
