"""Secret rotation: new version → new revision pinned to it → smoke → switch → old version disabled.

Rule: the serving revision keeps serving until a candidate pinned to the new versions has passed its
checks. A failed rotation disables the new versions, puts the backing services (the database role's
password) back on the old ones, discards the candidate, and leaves traffic where it was. Composed secrets
that use the rotated one (DATABASE_URL over DB_PASSWORD) get a new version in the same step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from deployctl.config import Stack
from deployctl.errors import DeployctlError
from deployctl.pipeline import run as runmod
from deployctl.pipeline.executor import Executor, finish
from deployctl.pipeline.migrations import check_data_kept, database_head
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.orchestrator import candidate_stages, plan_release, recorded_artifacts
from deployctl.pipeline.plan import Context, Facts, Plan, PlanKind, Stage, Step, StepOutcome
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.steps import AddSecretVersion, DisableOldVersions
from deployctl.pipeline.target import Target


def check_rotatable(target: Target, name: str, value: str | None) -> None:
    stack = target.stack
    secret = stack.secret(name)
    if secret.source == "composed":
        parts = ", ".join(r for r in secret.references() if r in stack.secrets)
        raise DeployctlError(f"{name} is composed from other values", f"Rotate what it is made of: {parts}.")
    if secret.source == "provided" and value is None:
        raise DeployctlError(f"{name} is provided by you", f"Pipe the new value in: deployctl secrets rotate "
                                                           f"{stack.name} {name} --from-stdin < file")


def rotated_with(stack: Stack, name: str) -> set[str]:
    """*name* and every composed secret made from it, directly or through another composed secret."""
    changed = {name}
    grew = True
    while grew:
        users = {k for k, s in stack.secrets.items() if s.source == "composed" and changed & set(s.references())}
        grew = not users <= changed
        changed |= users
    return changed


@dataclass(frozen=True)
class RotateFacts(Facts):
    """What a rotation plan was made from."""

    kind: ClassVar[PlanKind] = "rotate"
    secret: str  # the secret rotated
    changed: list[str]  # it and the composed secrets made from it, which get a new version too
    versions_before: dict[str, str]  # the versions pinned now (what a failed rotation goes back to)
    serving_release: str | None  # the release that serves now (None: nothing to deploy again)


def plan_rotation(target: Target, name: str, value: str | None) -> Plan[RotateFacts]:
    """Read-only: new version → candidates pinned to it → smoke → switch → old versions disabled."""
    check_rotatable(target, name, value)
    stack = target.stack
    serving = runmod.serving_release(target)
    old = {k: v for k, v in target.current_secret_versions().items() if v}
    changed = sorted(rotated_with(stack, name))
    plan = Plan(stack.name, target.name, RotateFacts(name, changed, old, serving.id if serving else None))
    add = Stage("build", [[AddSecretVersion(name, value)]])
    if serving is None:  # nothing runs on the old version: the backing services take the new one, done
        plan.stages = [add, Stage("deploy", [[PrepareBacking()]])]
        return plan
    affected = [svc for svc in serving.revisions if set(stack.services[svc].secrets.values()) & set(changed)]
    deploy, smoke, promote = candidate_stages(target, affected, runmod.serving_revisions(target))
    revert = RevertSecrets(name, tuple(changed), tuple(sorted(old.items())))
    plan.stages = [
        add,
        replace(deploy, waves=[[PrepareBacking()], *deploy.waves], undo=(*deploy.undo, revert)),
        replace(smoke, undo=(*smoke.undo, revert)),
        replace(promote, waves=[promote.waves[0], [DisableOldVersions(tuple(changed))], *promote.waves[1:]],
                undo=(*promote.undo, revert)),
    ]
    return plan


def rotate(target: Target, name: str, value: str | None, options: Options, reporter: Reporter) -> ReleaseRecord:
    check_rotatable(target, name, value)
    with runmod.locked(target, options, reporter) as lock_id:
        check_data_kept(target, accept=False)
        plan = plan_rotation(target, name, value)
        serving = target.ledger.get(plan.facts.serving_release or "")
        # what serves is what `up` would release now (code, settings): only then may the rotation's record say
        # so, else the next `up` would find "nothing changed" and never apply what is pending
        up_to_date = serving is not None and plan_release(target, Options()).noop
        record = runmod.new_record(target, "rotate", options, lock_id)
        record.previous = runmod.serving_revisions(target)
        # the schema its revisions run on: a rollback to this rotation compares its code with this head
        record.migration_before = record.migration_after = database_head(target)
        if serving is not None:  # what it will serve: the serving revisions, the affected ones replaced by Deploy
            record.revisions = dict(serving.revisions)
        target.ledger.save(record)
        ctx = Context(target, record, options, previous=dict(record.previous))
        if serving is not None:
            ctx.artifacts = recorded_artifacts(serving)
        Executor(reporter).execute(plan, ctx)
        if serving is None:
            return finish(target, record, "succeeded", f"{name} is now v{ctx.versions[name]}; no release serves yet")
        record.revisions = {**serving.revisions, **{svc: rev.name for svc, rev in ctx.candidates.items()}}
        record.artifacts, record.source_hash = serving.artifacts, serving.source_hash
        record.fingerprint = plan_release(target, Options()).facts.fingerprint if up_to_date else None
        done = f"{name} rotated to v{ctx.versions[name]}"
        if ctx.disabled:
            done += f"; disabled {', '.join(ctx.disabled)}"
        return finish(target, record, "succeeded", done)


@dataclass(frozen=True)
class PrepareBacking(Step):
    """Put the backing services (the database login's password) on the versions this run pins."""

    stage: str = "deploy"

    def describe(self) -> str:
        return "set the backing services (database login) to the new versions"

    def run(self, ctx: Context) -> StepOutcome:
        ctx.target.prepare(ctx.artifacts, ctx.versions, infrastructure=False)
        return StepOutcome("")


@dataclass(frozen=True)
class RevertSecrets:
    """Undo of a failed rotation: the new versions are disabled and the backing services go back to the old."""

    name: str
    changed: tuple[str, ...]
    old: tuple[tuple[str, str], ...]

    def __call__(self, ctx: Context) -> str | None:
        old = dict(self.old)
        for secret in self.changed:
            if secret in old:
                ctx.target.disable_secret_versions(secret, keep=[old[secret]])
        ctx.target.prepare(ctx.artifacts, old, infrastructure=False)
        return f"The new {self.name} version was disabled; the old versions serve"
