"""up, rollback, status, releases, down, unlock: parse, call one library function, render."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from deployctl.commands.common import (
    command_line,
    json_option,
    lock_timeout_option,
    open_stack,
    project_root,
    stack_to_plan,
)
from deployctl.errors import StageFailed

_DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


@click.command()
@click.argument("stack")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--force", is_flag=True, help="Release even when nothing changed.")
@click.option("--image", metavar="REF@sha256:DIGEST", help="Deploy this image instead of building (gcp stacks).")
@click.option("--accept-risk", "accept_risks", multiple=True, metavar="RULE_ID",
              help="Release although this policy rule fails (recorded in the ledger). Repeatable.")
@click.option("--accept-empty-database", is_flag=True,
              help="Release onto an empty database although the ledger says it held data (recorded in the ledger).")
@lock_timeout_option
@json_option
def up(stack: str, dry_run: bool, force: bool, image: str | None, accept_risks: tuple[str, ...],
       accept_empty_database: bool, lock_timeout: float, as_json: bool) -> None:
    """Build, migrate, deploy, smoke-test and promote a release of STACK.

    The candidate gets traffic only after its smoke checks pass; if checks through the service URL
    fail after the switch, traffic goes straight back to the previous revision. With nothing changed
    (same source, settings and secret versions) it says which release serves and does nothing, unless
    what serves does not answer: then it heals it (restarts a dead router, replaces a dead revision with
    a new one from the same artifact after its smoke checks) and says so; --dry-run shows those steps.

    \b
    Example:
      deployctl up local
      deployctl up staging --image europe-docker.pkg.dev/p/r/api@sha256:…
    """
    from deployctl.output import ConsoleReporter, emit_json, line, show_plan
    from deployctl.pipeline import orchestrator
    from deployctl.pipeline.run import Options
    from deployctl.targets import preflight

    if image and not _DIGEST.match(image):
        raise click.BadParameter("must be pinned by digest: REGISTRY/IMAGE@sha256:<64 hex>", param_hint="--image")
    # the policy gate is offline: it runs before the target is opened (a gcp target needs pulumi and credentials)
    options = Options(command=command_line(), force=force, lock_timeout_s=lock_timeout, image=image,
                      accept_risks=accept_risks, accept_empty_database=accept_empty_database, root=project_root())
    if dry_run:
        with stack_to_plan(stack, before_open=lambda s: preflight(s, accept_risks)) as (_, target):
            plan = orchestrator.plan_release(target, options)
        show_plan(plan, as_json, f"Plan for {stack} ({target.name}): nothing will be changed by this command.")
        return
    spec, target = open_stack(stack, before_open=lambda s: preflight(s, accept_risks))
    reporter = ConsoleReporter(quiet=as_json)
    try:
        record = orchestrator.release(target, options, reporter)
    except StageFailed:
        if as_json:
            emit_json(target.ledger.history(limit=1)[0].to_dict())
        raise
    if as_json:
        emit_json(record.to_dict())
    elif record.kind == "heal":
        line(f"Heal {record.id} succeeded in {reporter.elapsed():.1f}s: {record.message}")
    elif record.outcome == "noop":
        line(f"Nothing changed: {record.message.removeprefix('nothing changed: ')} at "
             f"{', '.join(target.service_url(s) for s in spec.services)}. Use --force to redeploy.")
    else:
        line(f"Release {record.id} succeeded in {reporter.elapsed():.1f}s: {record.message}")


@click.command()
@click.argument("stack")
@click.option("--to", "to", metavar="RELEASE", callback=lambda ctx, param, value: _release_id(value),
              help="The release to go to (default: what served before the serving release).")
@click.option("--repin/--no-repin", default=None,
              help="Deploy the release's code again as new revisions pinned to the current secret versions "
                   "(default: only when the versions it ran with are disabled database-password ones).")
@click.option("--accept-schema", is_flag=True,
              help="Roll back across migrations not marked rollback_safe (recorded in the ledger).")
@lock_timeout_option
@json_option
def rollback(stack: str, to: str | None, repin: bool | None, accept_schema: bool, lock_timeout: float,
             as_json: bool) -> None:
    """Send STACK's traffic back to an earlier release's revisions.

    Without --to it goes to what served before the serving release was deployed. A rollback deploys
    nothing, so rolling back again goes one further back (r3, r2, then r1), never forward to the
    release it left; at the first release it refuses and changes nothing. Going forward takes --to.

    No build, no migration and no infrastructure change: a database login check, one traffic switch
    per service, then the smoke checks through the service URL. Database migrations are not reverted:
    crossing one that is not marked rollback_safe is refused unless --accept-schema. Revisions pinned to
    a secret version that has been disabled are refused unless --repin, which deploys the release's
    code again pinned to the current versions (the default when only the database password rotated).

    \b
    Example:
      deployctl rollback local
      deployctl rollback staging --to r0012
      deployctl rollback staging --to r0012 --repin
    """
    from deployctl.output import ConsoleReporter, emit_json, line
    from deployctl.pipeline.rollback import rollback as do_rollback
    from deployctl.pipeline.rollback_guards import Guard
    from deployctl.pipeline.run import Options

    _, target = open_stack(stack)
    reporter = ConsoleReporter(quiet=as_json)
    options = Options(command=command_line(), lock_timeout_s=lock_timeout, root=project_root())
    record = do_rollback(target, to, options, reporter, Guard(repin=repin, accept_schema=accept_schema))
    if as_json:
        emit_json(record.to_dict())
    else:
        line(f"Rollback {record.id} succeeded in {reporter.elapsed():.1f}s: {record.message}")


def _release_id(value: str | None) -> str | None:
    """``--to ""`` is not "no --to": an empty name rolled back one release instead of refusing."""
    if value is not None and not value.strip():
        raise click.BadParameter("must name a release, e.g. r0012", param_hint="'--to'")
    return value


@click.command()
@click.argument("stack")
@json_option
def status(stack: str, as_json: bool) -> None:
    """Show what serves STACK: release, revisions, URL, database, secret versions and the lock.

    The secret versions are the ones the serving revisions run with; a newer version that they do not
    use yet is shown beside them as "(latest vN)".

    \b
    Example:
      deployctl status local
    """
    from deployctl.output import emit_json, line
    from deployctl.pipeline.model import LockInfo
    from deployctl.pipeline.status import stack_status

    _, target = open_stack(stack)
    facts = stack_status(target)
    if as_json:
        emit_json(facts)
        return
    line(f"Stack {facts['stack']} (target {facts['target']})")
    rev_text = ", ".join(f"{s}: {r}" for s, r in facts["revisions"].items()) or "nothing serves"
    line(f"  serving    {facts['serving_release'] or '-'} ({rev_text})")
    _health_lines(facts["health"], stack)
    for svc, splits in facts["traffic"].items():
        if len(splits) > 1:  # a traffic switch in progress, or one a dead process left half-way
            line(f"  traffic    {svc}: " + ", ".join(f"{s['revision']} {s['percent']}%" for s in splits))
    for key, value in facts["facts"].items():
        line(f"  {key:<10} {value}")
    line(f"  migration  {facts['migration'] or '-'}")
    latest = facts["latest_secret_versions"]
    for svc, pinned in facts["secret_versions"].items():  # what the serving revision runs with
        shown = ", ".join(f"{k} v{v}" + (f" (latest v{latest[k]})" if latest.get(k) not in (None, v) else "")
                          for k, v in sorted(pinned.items()))
        line(f"  secrets    {svc}: {shown or '-'}")
    if not facts["secret_versions"]:
        shown = ", ".join(f"{k} v{v}" if v else f"{k} (none)" for k, v in latest.items())
        line(f"  secrets    {shown or '-'} (latest; nothing serves)")
    lock = facts["lock"]
    if lock is None:
        line("  lock       free")
    else:
        stale = " [stale: holder is gone]" if lock["stale"] else ""
        holder = LockInfo(**{k: v for k, v in lock.items() if k != "stale"})
        line(f"  lock       {holder.describe()}{stale}")


def _health_lines(health: dict[str, Any], stack: str) -> None:
    """One line per service saying whether its router and revision answer; what is dead says DEAD."""
    from deployctl.output import line

    def state(alive: bool | None) -> str:
        return "alive" if alive else "DEAD"

    for svc, parts in health["services"].items():
        line(f"  health     {svc}: router {state(parts['router_alive'])}, "
             f"revision {parts['revision']} {state(parts['revision_alive'])}")
    if health["database_alive"] is not None:
        line(f"  health     database {'running' if health['database_alive'] else 'DEAD (not running)'}")
    if not health["answers"]:
        line(f"  health     what serves does not answer: `deployctl up {stack}` heals it when the source is "
             f"what serves (else it releases the source; `up {stack} --dry-run` shows which)")


@click.command()
@click.argument("stack")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many to show.")
@json_option
def releases(stack: str, limit: int, as_json: bool) -> None:
    """List STACK's releases, rollbacks and rotations, newest first.

    \b
    Example:
      deployctl releases local --limit 5
    """
    from deployctl.output import emit_json, table

    _, target = open_stack(stack)
    history = target.ledger.history(limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in history])
        return
    rows = []
    for r in history:
        took = f"{r.finished - r.started:.1f}s" if r.finished else "-"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
        revs = ", ".join(r.revisions.values()) or "-"
        commit = (r.git_sha or "-")[:8] + ("-dirty" if r.git_dirty else "")  # as `git describe --dirty` says it
        rows.append([r.id, r.kind, r.outcome, revs, (r.source_hash or "-")[:12], commit, when, took, r.message[:80]])
    columns = ["ID", "KIND", "OUTCOME", "REVISIONS", "SOURCE", "GIT", "STARTED", "TOOK", "MESSAGE"]
    table(f"Releases of {stack}", columns, rows)


@click.command()
@click.argument("stack")
@click.option("--purge", is_flag=True, help="Also delete the stack's database, secrets and ledger.")
@click.option("--yes", is_flag=True, help="Do not ask before --purge deletes data.")
def down(stack: str, purge: bool, yes: bool) -> None:
    """Stop a local STACK: its router, revisions and Postgres. Data stays unless --purge.

    \b
    Example:
      deployctl down local
      deployctl down local --purge --yes
    """
    from deployctl.output import line
    from deployctl.targets.down import check_down

    _, target = open_stack(stack, before_open=check_down)

    def confirm() -> None:  # asked by the target before it deletes anything
        if not yes and not click.confirm(f"Delete the database, secrets and history of {stack}?"):
            raise click.Abort()

    for done in target.down(purge, confirm):
        line(done)
    line(f"{stack} is down.")


@click.command()
@click.argument("stack")
@click.option("--force", "lock_id", metavar="LOCK_ID", help="Break the lock with this id (shown by status).")
def unlock(stack: str, lock_id: str | None) -> None:
    """Show STACK's deploy lock, or break it with --force when its holder is stuck or gone.

    Without --force it changes nothing: it exits 0 when the stack is free, and when it is locked it
    prints the holder and the command that breaks the lock, and exits 4 (locked), so a script can tell
    the two apart. A holder on this machine whose process has died is recovered automatically by the
    next deploy.

    \b
    Example:
      deployctl unlock local
      deployctl unlock local --force 3f9a1c2e
    """
    from deployctl.errors import EXIT_LOCKED
    from deployctl.output import line

    _, target = open_stack(stack)
    if lock_id is not None:
        line(f"Broke {target.lock.force_release(lock_id).describe()}.")
        return
    holder = target.lock.holder()
    if holder is None:
        line(f"{stack} is not locked.")
        return
    stale = " Its holder is gone." if target.lock.is_stale(holder) else ""
    line(f"{stack} is locked: {holder.describe()}.{stale}")
    line(f"Break it with: deployctl unlock {stack} --force {holder.id}")
    raise click.exceptions.Exit(EXIT_LOCKED)  # a state, not an error: no "Error:" line
