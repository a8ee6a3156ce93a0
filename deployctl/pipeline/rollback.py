"""Rollback: route traffic back to the revisions of an earlier release.

Rule: no build, no migration, no infrastructure change: a plan of one stage (promote) whose steps, one
per service and all at once, make sure the recorded revision can serve, give it all the traffic and
check the service URL; when the stack has a database, a smoke stage first logs in with the goal's
password version. If one fails, every service goes back to what served before. Schema changes are
not reverted (see docs/runbook.md: expand/contract).

Without ``--to`` the goal is what served before the serving revisions were deployed, so repeated rollbacks
walk back one release at a time and never forward (``_one_back``; docs/runbook.md, "Roll back").

Before any change the goal is checked (deployctl.pipeline.rollback_guards): a rollback across a migration
that is not rollback-safe is refused without ``--accept-schema``; one to revisions pinned to a disabled
secret version is refused, or *repinned*: a plan of the release's own stages (pin the current versions →
deploy its artifacts again as candidates → smoke checks and a database login → promote), with no build
and no migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from deployctl.errors import DeployctlError
from deployctl.pipeline import health
from deployctl.pipeline import rollback_guards as guards
from deployctl.pipeline import run as runmod
from deployctl.pipeline.executor import Executor, finish
from deployctl.pipeline.migrations import check_data_kept, database_head
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.orchestrator import candidate_stages, recorded_artifacts
from deployctl.pipeline.plan import Context, Facts, Plan, PlanKind, Stage
from deployctl.pipeline.rollback_guards import Guard
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.steps import CheckDatabaseLogin, PinSecrets, Reactivate, pins_of
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
    while history[at].kind == "heal":  # a heal mended what served: walk on from what it mended
        at = _deployed(history, at + 1, history[at].previous, stack)
    if history[at].repinned:  # a repinned rollback deployed what serves: walk on from what it restored
        at = next((i for i in range(at, len(history)) if history[i].id == history[at].restored), at)
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
        if (history[i].kind != "rollback" or history[i].repinned) and history[i].revisions == revisions:
            return i
    raise DeployctlError(
        f"no release in the last {_HISTORY} records of the {stack} ledger deployed {', '.join(revisions.values())}",
        f"Pick a release from `deployctl releases {stack}` with --to.",
    )


@dataclass(frozen=True)
class RollbackFacts(Facts):
    """What a rollback plan was made from and decided."""

    kind: ClassVar[PlanKind] = "rollback"
    to: str  # the release rolled back to
    revisions: dict[str, str]  # its revisions
    previous: dict[str, str]  # service -> the revision that serves now
    repin: bool  # deploy its artifacts again, pinned to the current versions, instead of routing back
    unusable_versions: list[str]  # its pins that cannot serve ("KEY v1 (disabled)")
    migrations_crossed: list[str]
    accepted_schema: list[str]  # the crossed migrations not marked rollback-safe (--accept-schema)


def plan_rollback(target: Target, to: str | None, guard: Guard | None = None,
                  root: Path | None = None) -> tuple[Plan[RollbackFacts], ReleaseRecord]:
    """Read-only: the plan that routes every service back to *to*'s revisions (or the release before), or,
    repinning, deploys its artifacts again pinned to the current secret versions. Refuses (changing
    nothing) to cross a migration that is not rollback-safe, or to restore revisions pinned to a disabled
    secret version, unless *guard* allows it."""
    guard = guard or Guard()
    goal = choose(target, to)
    previous = runmod.serving_revisions(target)
    crossing = guards.schema_crossing(target, goal, root or Path.cwd(), guard.accept_schema)
    unusable = guards.unusable_pins(target, goal)
    repin = guards.decide_repin(target, goal, unusable, guard.repin)
    facts = RollbackFacts(
        to=goal.id, revisions=dict(goal.revisions), previous=previous, repin=repin,
        unusable_versions=[f"{name} v{version} ({state})" for name, version, state in unusable],
        migrations_crossed=crossing.names, accepted_schema=crossing.accepted,
    )
    plan = Plan(target.stack.name, target.name, facts)
    if repin:
        pins = PinSecrets(pins_of(target.stack, target.current_secret_versions()))
        plan.stages = [Stage("build", [[pins]]), *candidate_stages(target, list(goal.revisions), previous)]
        return plan, goal
    db = target.stack.database
    pinned = goal.secret_versions.get(db.password_secret) if db else None
    check = [Stage("smoke", [[CheckDatabaseLogin(db.password_secret, pinned)]])] if db and pinned else []
    reactivate = [Reactivate(svc, rev) for svc, rev in goal.revisions.items()]
    back = health.RouteBack(tuple(sorted(health.fallbacks(target, previous).items())))  # never onto a corpse
    plan.stages = [*check, Stage("promote", [reactivate], undo=(back,))]
    return plan, goal


def rollback(target: Target, to: str | None, options: Options, reporter: Reporter,
             guard: Guard | None = None) -> ReleaseRecord:
    with runmod.locked(target, options, reporter) as lock_id:
        check_data_kept(target, accept=False)
        plan, goal = plan_rollback(target, to, guard, options.root)
        record = runmod.new_record(target, "rollback", options, lock_id)
        record.previous = dict(plan.facts.previous)
        record.restored, record.repinned = goal.id, plan.facts.repin
        record.accepted_risks += [f"schema:{name}" for name in plan.facts.accepted_schema]
        record.artifacts = dict(goal.artifacts)
        record.source_hash, record.fingerprint = goal.source_hash, goal.fingerprint
        record.migration_before = record.migration_after = database_head(target)
        ctx = Context(target, record, options, previous=dict(record.previous))
        if plan.facts.repin:  # Deploy records the new revisions, PinSecrets the versions
            ctx.artifacts = recorded_artifacts(goal)
        else:
            record.revisions = dict(goal.revisions)
            record.secret_versions = dict(goal.secret_versions)
        target.ledger.save(record)
        Executor(reporter).execute(plan, ctx)
        revisions = ", ".join(record.revisions.values())
        how = f"; new revisions of its code, pinned to {_pins(ctx.versions)}" if plan.facts.repin else ""
        return finish(target, record, "succeeded", f"rolled back to release {goal.id} ({revisions}){how}")


def _pins(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} v{version}" for name, version in sorted(versions.items()))
