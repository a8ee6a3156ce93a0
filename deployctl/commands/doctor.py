"""doctor: a read-only preflight of a stack's Google Cloud project (parse, call the library, render)."""

from __future__ import annotations

import click

from deployctl.commands.common import json_option, project_root


@click.command()
@click.argument("stack")
@json_option
def doctor(stack: str, as_json: bool) -> None:
    """Check, read-only, that STACK's Google Cloud project is ready for a release.

    One line per check — ok, missing (with the command that fixes it), pending (created by the first
    `deployctl up`) or note: the pulumi CLI, the APIs, your identity's and the trigger identity's
    (<stack>-build) roles, the state bucket, the Pulumi passphrase, the image repository, the trigger's
    repository connection, each declared secret's enabled version, the Cloud SQL instance and the
    database connection budget for its real tier, and whether Cloud Run here may read the images of
    each stack in gcp.promote_from. Changes nothing. Exit code 5 when anything is missing.
    A local stack has nothing to check in the cloud.

    \b
    Example:
      deployctl doctor staging
    """
    from deployctl import config
    from deployctl.output import emit_json, line

    root = project_root()
    spec = config.load(stack, root)
    if spec.target != "gcp":
        message = f"stack {stack} runs on this machine: nothing to check in Google Cloud (deployctl up {stack})"
        if as_json:
            emit_json({"stack": stack, "ok": True, "checks": [], "note": message})
        else:
            line(message)
        return
    from deployctl.targets.gcp.doctor import open_doctor

    runner = open_doctor(spec, root)
    if not as_json:
        line(f"Checking stack {stack} in {spec.project} (read-only)")
    report = runner.run(progress=(lambda text: None) if as_json else line)
    if as_json:
        emit_json(report.to_dict())
    if report.missing:
        raise report.error()
    if not as_json:
        line(f"Stack {stack} is ready: deployctl up {stack}")
