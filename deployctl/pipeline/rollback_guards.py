"""What a rollback must not do silently. Both checks are read-only and refuse before any change, with one
line and the command that overrides them (docs/runbook.md, "Roll back").

- **Secret versions.** Revisions pinned to a secret version that has since been disabled or destroyed
  cannot serve as they were: a warm local process still holds the old value, a new instance cannot read
  it, and a database password's old login has a password nobody knows. Such a rollback is refused unless
  it *repins*: the goal's artifacts deploy again as new revisions pinned to the current versions. Repinning
  is the default when every such version is the database password's (or composed from it), because then
  nothing else can work and the code behaves the same with the new password; any other secret's value
  is behaviour (sessions, signatures, tokens) the operator decides on with ``--repin``.
- **Schema.** Migrations are never reverted, so a rollback to a release whose code ran on an older head
  crosses every migration since (deployctl.pipeline.migrations). Crossing one that is not marked
  ``rollback_safe = True`` is refused unless ``--accept-schema`` (recorded in the ledger). Every record
  carries the head its code ran with (a rotation and a rollback too, which migrate nothing), so the
  guard compares like with like (``code_ran_on``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployctl.errors import PreconditionError
from deployctl.pipeline import migrations
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.rotate import rotated_with
from deployctl.pipeline.target import Target


@dataclass(frozen=True)
class Guard:
    """What the operator allowed: ``--repin``/``--no-repin`` (None: decide) and ``--accept-schema``."""

    repin: bool | None = None
    accept_schema: bool = False


@dataclass(frozen=True)
class Crossing:
    names: list[str]  # every migration the rollback crosses, newest first
    accepted: list[str]  # the ones not marked rollback-safe, crossed with --accept-schema


def schema_crossing(target: Target, goal: ReleaseRecord, root: Path, accept: bool) -> Crossing:
    """The migrations between the database's head and the head *goal*'s code ran on; refuse unsafe ones."""
    graph = migrations.read_all(migrations.versions_dir(target.stack, root))
    history = target.ledger.history(limit=200)
    ran_on = code_ran_on(goal, history)
    crossed = migrations.crossed(graph, migrations.database_head(target), ran_on)
    unsafe = [r for r in crossed if not (r in graph and graph[r].rollback_safe)]
    if unsafe and not accept:
        listed = ", ".join(f"{_name(graph, r)} ({migrations.applied_by(history, graph, r) or 'release unknown'})"
                           for r in unsafe)
        stack = target.stack.name
        raise PreconditionError(
            f"rollback to {goal.id} crosses migration{'s' if len(unsafe) > 1 else ''} {listed}: release "
            f"{goal.id}'s code ran on {ran_on or 'an empty database'}",
            "If that code works on the newer schema, mark the migration `rollback_safe = True` "
            f"(docs/runbook.md); to roll back anyway: deployctl rollback {stack} --to {goal.id} --accept-schema",
        )
    return Crossing([_name(graph, r) for r in crossed], [_name(graph, r) for r in unsafe])


def code_ran_on(goal: ReleaseRecord, history: list[ReleaseRecord]) -> str | None:
    """The migration head *goal*'s code ran with.

    An ``--image`` release on gcp ran migrations deployctl could not read: its code ran on at least the head
    the database had before them, a safe stand-in (it can only add crossings, never hide one). A rotation or
    rollback records the head it ran with; one written before it did (both heads None) redeployed an earlier
    release's code on that release's schema: a rollback the release it restored, a rotation the newest
    older record that deployed the same artifacts."""
    if goal.migration_after or goal.migration_before or goal.kind == "release":
        return goal.migration_after or goal.migration_before
    ids = [r.id for r in history]
    older = history[ids.index(goal.id) + 1:] if goal.id in ids else []
    if goal.kind == "rollback":
        source = next((r for r in older if r.id == goal.restored), None)
    else:
        source = next((r for r in older if goal.artifacts and r.artifacts == goal.artifacts), None)
    return code_ran_on(source, older) if source is not None else None


def unusable_pins(target: Target, goal: ReleaseRecord) -> list[tuple[str, str, str]]:
    """(secret, version, state) of every version *goal*'s revisions run with that is not enabled: what each
    revision really runs with where it still exists, else what the release pinned; and the database
    password version its composed secrets (DATABASE_URL) were made from."""
    pinned: dict[str, str] = {}
    for svc, revision in goal.revisions.items():
        used = target.revision_secret_versions(svc, revision)
        if used is None:
            service = target.stack.services.get(svc)
            wanted = set(service.secrets.values()) if service else set()
            used = {name: v for name, v in goal.secret_versions.items() if name in wanted}
        pinned.update(used)
    db = target.stack.database
    if db and db.password_secret in goal.secret_versions:
        pinned.setdefault(db.password_secret, goal.secret_versions[db.password_secret])
    unusable = []
    for name, version in sorted(pinned.items()):
        state = target.secret_version_states(name).get(version, "gone")
        if state != "enabled":
            unusable.append((name, version, state))
    return unusable


def decide_repin(target: Target, goal: ReleaseRecord, unusable: list[tuple[str, str, str]],
                 wanted: bool | None) -> bool:
    """Whether to repin (see the module's rule); refuse when the revisions cannot serve as they are."""
    if wanted or not unusable:
        return bool(wanted)
    db = target.stack.database
    if wanted is None and db and {name for name, _, _ in unusable} <= rotated_with(target.stack, db.password_secret):
        return True
    if len(unusable) == 1:
        (name, version, state), = unusable
        listed = f"{name} v{version}, which is {state}"
    else:
        listed = ", ".join(f"{name} v{version} ({state})" for name, version, state in unusable)
    raise PreconditionError(
        f"release {goal.id} is pinned to {listed}",
        "Deploy its code again pinned to the current versions: "
        f"deployctl rollback {target.stack.name} --to {goal.id} --repin",
    )


def _name(graph: dict[str, migrations.Migration], revision: str) -> str:
    return graph[revision].name if revision in graph else revision
