"""Rollback: route traffic back to the revisions of an earlier release.

Rule: no build, no migration, no infrastructure change: a plan of one stage (promote) whose steps, one
per service and all at once, make sure the recorded revision can serve, give it all the traffic and
check the service URL. If one fails, every service goes back to what served before. Schema changes are
not reverted (see docs/runbook.md: expand/contract).
"""

from __future__ import annotations

from deployctl.errors import DeployctlError
from deployctl.pipeline import run as runmod
from deployctl.pipeline.executor import Executor, finish
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.orchestrator import route_back
from deployctl.pipeline.plan import Context, Plan, Stage
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.steps import Reactivate
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


def plan_rollback(target: Target, to: str | None) -> tuple[Plan, ReleaseRecord]:
    """Read-only: the plan that routes every service back to *to*'s revisions (or the release before)."""
    goal = choose(target, to)
    previous = runmod.serving_revisions(target)
    reactivate = [Reactivate(svc, rev) for svc, rev in goal.revisions.items()]
    plan = Plan("rollback", target.stack.name, target.name,
                stages=[Stage("promote", [reactivate], undo=(route_back,))],
                facts={"to": goal.id, "revisions": dict(goal.revisions), "previous": previous})
    return plan, goal


def rollback(target: Target, to: str | None, options: Options, reporter: Reporter) -> ReleaseRecord:
    with runmod.locked(target, options, reporter) as lock_id:
        plan, goal = plan_rollback(target, to)
        record = runmod.new_record(target, "rollback", options, lock_id)
        record.previous = dict(plan.facts["previous"])
        record.revisions = dict(goal.revisions)
        record.artifacts = dict(goal.artifacts)
        record.secret_versions = dict(goal.secret_versions)
        record.source_hash, record.fingerprint = goal.source_hash, goal.fingerprint
        record.migration_before = record.migration_after = target.migration_head()
        target.ledger.save(record)
        Executor(reporter).execute(plan, Context(target, record, options, previous=dict(record.previous)))
        revisions = ", ".join(goal.revisions.values())
        return finish(target, record, "succeeded", f"rolled back to release {goal.id} ({revisions})")
