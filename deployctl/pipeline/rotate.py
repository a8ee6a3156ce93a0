"""Secret rotation: new version → new revision pinned to it → smoke → switch → old version disabled.

Rule: the serving revision keeps serving until a candidate pinned to the new versions has passed its
checks. A failed rotation disables the new versions, puts the backing services (the database role's
password) back on the old ones, discards the candidate, and leaves traffic where it was. Composed secrets
that use the rotated one (DATABASE_URL over DB_PASSWORD) get a new version in the same step.
"""

from __future__ import annotations

from deployctl.errors import ConfigError, DeployctlError, StageFailed
from deployctl.pipeline import orchestrator
from deployctl.pipeline import run as runmod
from deployctl.pipeline.model import Artifact, ReleaseRecord, Revision
from deployctl.pipeline.run import Options, Reporter, Run
from deployctl.pipeline.target import Target


def check_rotatable(target: Target, name: str, value: str | None) -> None:
    stack = target.stack
    secret = stack.secrets.get(name)
    where = f"{stack.file}: deployctl:secrets"
    if secret is None:
        known = ", ".join(sorted(stack.secrets)) or "none"
        raise ConfigError(f"{where}: no secret named {name!r}", f"Declared secrets: {known}.")
    if secret.source == "composed":
        parts = ", ".join(r for r in secret.references() if r in stack.secrets)
        raise DeployctlError(f"{name} is composed from other values", f"Rotate what it is made of: {parts}.")
    if secret.source == "provided" and value is None:
        raise DeployctlError(f"{name} is provided by you", f"Pipe the new value in: deployctl secrets rotate "
                                                           f"{stack.name} {name} --from-stdin < file")


def rotate(target: Target, name: str, value: str | None, options: Options, reporter: Reporter) -> ReleaseRecord:
    check_rotatable(target, name, value)
    with runmod.locked(target, options, reporter) as lock_id:
        serving = orchestrator.serving_release(target)
        run = Run(target, runmod.new_record(target, "rotate", options, lock_id), reporter)
        run.record.previous = runmod.serving_revisions(target)
        old = {k: v for k, v in target.current_secret_versions().items() if v}
        versions = run.stage("build", lambda: _add_version(target, name, value))
        changed = sorted(k for k in versions if versions[k] != old.get(k))
        run.record.secret_versions = versions
        run.save()
        if serving is None:
            target.prepare({}, versions)
            return run.finish("succeeded", f"{name} is now v{versions[name]}; no release serves yet")
        artifacts = {svc: Artifact(svc, serving.source_hash or "", ref, "") for svc, ref in serving.artifacts.items()}
        try:
            candidates = _roll(run, artifacts, versions, changed)
        except StageFailed as exc:
            _revert(target, artifacts, changed, old)
            orchestrator.explain_failure(run, exc)
            exc.message += f" The new {name} version was disabled; the old versions serve."
            raise
        run.record.revisions = {**serving.revisions, **{svc: rev.name for svc, rev in candidates.items()}}
        run.record.artifacts, run.record.source_hash = serving.artifacts, serving.source_hash
        disabled = [f"{k} v{v}" for k in changed for v in target.disable_secret_versions(k, keep=[versions[k]])]
        run.record.fingerprint = _fingerprint(target, serving)
        orchestrator.retire_old(target, run.record)
        done = f"{name} rotated to v{versions[name]}; " + (f"disabled {', '.join(disabled)}" if disabled else "")
        return run.finish("succeeded", done.rstrip("; "))


def _add_version(target: Target, name: str, value: str | None) -> tuple[dict[str, str], str]:
    version = target.add_secret_version(name, value)
    versions = target.ensure_secrets()
    return versions, f"added {name} v{version}"


def _roll(
    run: Run, artifacts: dict[str, Artifact], versions: dict[str, str], changed: list[str]
) -> dict[str, Revision]:
    target = run.target
    uses = {svc: set(target.stack.services[svc].secrets.values()) for svc in artifacts}
    affected = {svc: a for svc, a in artifacts.items() if uses[svc] & set(changed)}

    def deploy() -> tuple[dict[str, Revision], str]:
        target.prepare(artifacts, versions)
        return orchestrator.deploy_candidates(target, affected, versions, run.record.id)

    candidates = run.stage("deploy", deploy)
    try:
        run.stage("smoke", lambda: orchestrator.smoke_candidates(target, candidates))
        run.stage("promote", lambda: orchestrator.promote(target, candidates, run.record.previous))
    except StageFailed:
        for svc, rev in candidates.items():
            target.discard(svc, rev.name)
        raise
    return candidates


def _revert(target: Target, artifacts: dict[str, Artifact], changed: list[str], old: dict[str, str]) -> None:
    for name in changed:
        if name in old:
            target.disable_secret_versions(name, keep=[old[name]])
    target.prepare(artifacts, old)


def _fingerprint(target: Target, serving: ReleaseRecord) -> str | None:
    hashes = {svc: target.source_hash(svc) for svc in target.stack.services}
    if orchestrator.combined_hash(hashes) != serving.source_hash:
        return None  # the working tree moved on since that release: the next `up` is a real release
    return orchestrator.plan_release(target, Options()).fingerprint
