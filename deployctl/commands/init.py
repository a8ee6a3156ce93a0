"""init: write the files that release this repository's service with deployctl (parse, call, render)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: write what was detected.")
@click.option("--force", is_flag=True, help="Overwrite files that already exist (default: skip them).")
def init(directory: Path, yes: bool, force: bool) -> None:
    """Detect how the service in DIRECTORY (default: here) is built, served and
    migrated, and write what deployctl needs to release it.

    Writes Pulumi.yaml, infra/__main__.py (two lines that run the Pulumi
    program installed with deployctl), stacks/Pulumi.{local,staging,production}.yaml,
    Dockerfile.cloudrun, .dockerignore and cloudbuild.yaml. It reads the code
    (never imports it) for the dependency manager, the framework, the command
    and port, the migrations, health endpoints and the environment variables
    of the database and the secrets; each thing it could not tell is a line
    saying what to set by hand. Existing files are skipped unless --force.

    \b
    Example:
      deployctl init            # shows what it found, asks, then writes
      deployctl init --yes      # writes without asking
      deployctl plan staging    # then: check the staging stack offline
    """
    from deployctl.scaffold import plan, report, write

    root = directory.resolve()
    # the app's definition goes in Pulumi.yaml; a project's own Pulumi.yaml is kept, so its stacks hold it whole
    scaffold = plan(root, shared=force or not (root / "Pulumi.yaml").exists())
    d = scaffold.detection
    click.echo("Detected:")
    for line in report.detected(d):
        click.echo(f"  {line}")
    click.echo("Not detected (set by hand):")
    for line in report.undetected(d):
        click.echo(f"  {line}")
    existing = scaffold.existing(root)
    if not yes:
        todo = len(scaffold.files) - (0 if force else len(existing))
        if not click.confirm(f"Write {todo} file(s) in {root}?", default=True):
            raise click.Abort()  # nothing written; "Aborted." and exit 130, as for Ctrl-C
    written, skipped = write(root, scaffold, force)
    for rel in written:
        click.echo(f"wrote {rel}")
    if skipped:
        click.echo(f"skipped (exists; --force overwrites): {', '.join(skipped)}")
    click.echo("Next: deployctl plan staging; deployctl up local")
