"""Rollback: route traffic back to the revisions of an earlier release.

Rule: no build, no migration, no infrastructure change: a plan of one stage (promote) whose steps, one
per service and all at once, make sure the recorded revision can serve, give it all the traffic and
check the service URL. If one fails, every service goes back to what served before. Schema changes are
not reverted (see docs/runbook.md: expand/contract).

Without ``--to`` the goal is what served before the serving revisions were deployed, so repeated rollbacks
walk back one release at a time and never forward (``_one_back``; docs/runbook.md, "Roll back").
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
_HISTORY = 200  # records read back; older ones are reached with --to


def choose(target: Target, to: str | None) -> ReleaseRecord:
    """Read-only: the release to roll back to: *to*, or what served before what serves now was deployed."""
    return _named(target, to) if to else _one_back(target)


def _named(target: Target, to: str) -> ReleaseRecord:
    stack = target.stack.name
    record = target.ledger.get(to)
    if record is None or not record.stack:
        raise DeployctlError(f"no release {to} in the {stack} ledger", f"See `deployctl releases {stack}`.")
    if record.outcome not in _SERVED or not record.revisions:
        raise DeployctlError(
            f"release {to} never served (outcome: {record.outcome})",
            f"Pick a succeeded release from `deployctl releases {stack}`.",
        )
    return record


def _one_back(target: Target) -> ReleaseRecord:
    """The record whose revisions served just before the record that deployed the serving revisions.

    A rollback deploys nothing (its revisions are an earlier record's), so the walk starts from the release
    or rotation that deployed what serves, and follows what served before it (``previous``). Rolling back
    twice goes r3 → r2 → r1, never forward to the release just left; after ``rollback`` and a new ``up``, a
    rollback returns to what served before that ``up``, not to the release that was rolled back from.
    """
    stack = target.stack.name
    serving = runmod.serving_revisions(target)
    if not serving:
        raise DeployctlError(f"nothing serves {stack} yet: there is no release to roll back to",
                             f"Release it first: deployctl up {stack}")
    history = target.ledger.history(limit=_HISTORY)  # newest first
    at = _deployed(history, 0, serving, stack)
    while True:
        if not history[at].previous:
            raise DeployctlError(
                f"nothing served {stack} before release {history[at].id}: there is no older release to roll back to",
                f"rollback never goes forward; pick a release from `deployctl releases {stack}` with --to.",
            )
        at = _deployed(history, at + 1, history[at].previous, stack)
        if history[at].revisions != serving:  # else a rotation that left every revision as it was: go on
            return history[at]


def _deployed(history: list[ReleaseRecord], start: int, revisions: dict[str, str], stack: str) -> int:
    """The index, from *start* on, of the newest release or rotation whose revisions are *revisions*."""
    for i in range(start, len(history)):
        if history[i].kind != "rollback" and history[i].revisions == revisions:
            return i
    raise DeployctlError(
        f"no release in the last {_HISTORY} records of the {stack} ledger deployed {', '.join(revisions.values())}",
        f"Pick a release from `deployctl releases {stack}` with --to.",
    )


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
