"""bootstrap: prepare an empty Google Cloud project for a gcp stack (parse, call the library, render)."""

from __future__ import annotations

import shutil

import click

from deployctl.commands.common import json_option, project_root
from deployctl.errors import UsageError


@click.command()
@click.argument("stack")
@click.option("--dry-run", is_flag=True, help="Print every step and whether it is needed; change nothing.")
@json_option
def bootstrap(stack: str, dry_run: bool, as_json: bool) -> None:
    """Prepare an empty Google Cloud project for STACK.

    Enables the APIs, creates the state bucket (uniform access, public access prevented, versioned),
    creates the build service account (<stack>-build: the identity the stack's Cloud Build trigger runs
    `deployctl up` as) with the roles a release needs, creates the Pulumi passphrase secret, logs Pulumi
    in to the bucket and creates the Pulumi stack. For each stack in gcp.promote_from that lives in
    another project, lets this project's Cloud Run read that stack's images (once its repository exists:
    until then the step says `later`; one who may not read that repository or its policy gets `unchecked`
    and the command for its admins, not a failure). Steps already done are skipped, so running it again
    changes nothing. Needs the pulumi CLI and Application Default Credentials.

    \b
    Example:
      deployctl bootstrap staging --dry-run
      deployctl bootstrap staging
    """
    from deployctl import config
    from deployctl.output import emit_json, line
    from deployctl.targets.gcp.bootstrap import open_bootstrap, pulumi_missing

    root = project_root()
    spec = config.load(stack, root)
    if spec.target != "gcp":
        raise UsageError(f"{spec.file}: stack {stack} has target {spec.target}; only gcp stacks are bootstrapped",
                         "Local stacks need no bootstrap: deployctl up local")
    if not dry_run and shutil.which("pulumi") is None:  # before credentials and before any change
        raise pulumi_missing(stack)
    runner = open_bootstrap(spec, root)
    say = (lambda text: None) if as_json else line
    say(f"Bootstrap {stack} in {spec.project}" + (" (dry run: nothing will be changed)" if dry_run else ""))
    outcome = runner.run(dry_run=dry_run, progress=say)
    if as_json:
        emit_json(outcome.to_dict())
    elif dry_run:
        say(f"Run `deployctl bootstrap {stack}` to apply the planned steps.")
    else:
        open_steps = [s["step"] for s in outcome.steps if s["state"] in ("later", "unchecked")]
        ready = f"Project ready. Next: deployctl plan {stack}, then deployctl up {stack}"
        say(ready if not open_steps else
            f"{ready}. Left open: {', '.join(open_steps)} (see above; `deployctl bootstrap {stack}` again finishes "
            "it when it can)")
