"""deployctl secrets list|set|rotate: versions and names only; values go in through stdin, never out."""

from __future__ import annotations

import sys

import click

from deployctl.commands.common import command_line, json_option, lock_timeout_option, open_stack, project_root
from deployctl.errors import DeployctlError


@click.group()
def secrets() -> None:
    """List, set and rotate a stack's secrets (values are never printed).

    \b
    Example:
      deployctl secrets list local
      deployctl secrets rotate local SECRET_KEY
    """


@secrets.command("list")
@click.argument("stack")
@json_option
def list_(stack: str, as_json: bool) -> None:
    """Show each declared secret: where its value comes from and its current version."""
    from deployctl.output import emit_json, table

    spec, target = open_stack(stack)
    versions = target.current_secret_versions()
    rows = [[name, s.source, versions.get(name) or "-"] for name, s in spec.secrets.items()]
    if as_json:
        emit_json([{"name": r[0], "source": r[1], "version": versions.get(r[0])} for r in rows])
        return
    table(f"Secrets of {stack}", ["NAME", "SOURCE", "VERSION"], rows)


@secrets.command("set")
@click.argument("stack")
@click.argument("name")
def set_(stack: str, name: str) -> None:
    """Add a version of a provided secret NAME, read from stdin; the next `up` pins it.

    \b
    Example:
      printf %s "$TOKEN" | deployctl secrets set local API_TOKEN
    """
    from deployctl.output import line

    spec, target = open_stack(stack)
    if spec.secret(name).source == "composed":
        raise DeployctlError(f"{name} is composed from other values and cannot be set")
    value = _read_stdin()
    version = target.add_secret_version(name, value)
    line(f"{name} v{version} added; `deployctl up {stack}` deploys it (or use `secrets rotate`).")


@secrets.command()
@click.argument("stack")
@click.argument("name")
@click.option("--from-stdin", is_flag=True, help="Read the new value from stdin instead of generating one.")
@lock_timeout_option
@json_option
def rotate(stack: str, name: str, from_stdin: bool, lock_timeout: float, as_json: bool) -> None:
    """Rotate secret NAME: new version → new revision → smoke → switch → old version disabled.

    A failed rotation disables the new version and leaves the old one serving. Rotating the database
    password moves to the role's other login, so the serving revision never loses the database.

    \b
    Example:
      deployctl secrets rotate local DB_PASSWORD
    """
    from deployctl.output import ConsoleReporter, emit_json, line
    from deployctl.pipeline.rotate import rotate as do_rotate
    from deployctl.pipeline.run import Options

    _, target = open_stack(stack)
    value = _read_stdin() if from_stdin else None
    reporter = ConsoleReporter(quiet=as_json)
    options = Options(command=command_line(), lock_timeout_s=lock_timeout, root=project_root())
    record = do_rotate(target, name, value, options, reporter)
    if as_json:
        emit_json(record.to_dict())
    else:
        line(f"Rotation {record.id} succeeded in {reporter.elapsed():.1f}s: {record.message}")


def _read_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise DeployctlError("the value is read from stdin, and stdin is a terminal",
                             "Pipe it in: printf %s \"$VALUE\" | deployctl secrets …")
    value = sys.stdin.read().rstrip("\n")
    if not value:
        raise DeployctlError("stdin was empty", "Pipe the value in; it is never echoed.")
    return value
