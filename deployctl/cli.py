"""The ``deployctl`` entry point: a click group whose commands load lazily.

Rule: this module imports nothing heavy. Commands live in deployctl.commands.* and are imported only when
run (or when their own ``--help`` is asked for). DeployctlError becomes ``Error: …`` / ``Hint: …`` and its
exit code here, and only here; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from deployctl import __version__, interrupts, streams

# command name -> (module, attribute, one-line help shown by `deployctl --help` without importing it)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("deployctl.commands.release", "up", "Build, migrate, deploy, smoke-test and promote a release."),
    "plan": ("deployctl.commands.infra", "plan", "Show what a release and the infrastructure would change."),
    "audit": ("deployctl.commands.infra", "audit", "Check a stack against the policy pack, offline."),
    "rollback": ("deployctl.commands.release", "rollback", "Send traffic back to an earlier release."),
    "promote": ("deployctl.commands.promote", "promote", "Deploy the image that passed one stack to another."),
    "status": ("deployctl.commands.release", "status", "Show the serving release, URL, database and secrets."),
    "releases": ("deployctl.commands.release", "releases", "List the release history of a stack."),
    "down": ("deployctl.commands.release", "down", "Stop a local stack (and with --purge delete its data)."),
    "unlock": ("deployctl.commands.release", "unlock", "Show a stack's deploy lock, or break it."),
    "ledger": ("deployctl.commands.ledger", "ledger", "Repair a stack's release ledger."),
    "secrets": ("deployctl.commands.secrets", "secrets", "List, set and rotate a stack's secrets."),
    "bootstrap": ("deployctl.commands.bootstrap", "bootstrap", "Prepare an empty Google Cloud project."),
    "doctor": ("deployctl.commands.doctor", "doctor", "Check, read-only, that a stack's project is ready."),
    "init": ("deployctl.commands.init", "init", "Write the stacks, Dockerfile and Pulumi entry for this repository."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deployctl")
@click.option("--debug", is_flag=True, envvar="DEPLOYCTL_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Release Python services to Cloud Run, or to this machine, safely.

    \b
    Example:
      deployctl up local          # build, migrate, deploy, smoke-test, promote
      deployctl status local
      deployctl rollback local

    \b
    Each target is an install extra: deployctl[local] runs stacks on this
    machine, deployctl[gcp] on Google Cloud (pip install 'deployctl[local]').
    """
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn DeployctlError into ``Error:``/``Hint:`` lines and its exit code."""
    from deployctl.errors import DeployctlError  # light: no third-party imports

    debug = "--debug" in (argv or sys.argv[1:]) or bool(os.environ.get("DEPLOYCTL_DEBUG"))
    interrupts.install()
    streams.survive_closed_pipes()  # `deployctl … | head -1` must not stop a rotation half-way
    try:
        # without standalone mode click returns ctx.exit(code)'s code instead of raising it
        code = cli.main(args=argv, prog_name="deployctl", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except DeployctlError as exc:
        if debug:
            raise
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        click.echo("Aborted.", err=True)
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _exit_interrupted()
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _exit_interrupted() -> None:
    """Exit 130 after a signal, everything already stopped, recorded and unlocked.

    Not through sys.exit: CPython (3.11) marks a KeyboardInterrupt that passes through code run by exec() of
    a string (dataclasses and namedtuples are made so, during any lazy import) as unhandled even once it is
    caught, and under `python -m deployctl` then ends the process by SIGINT whatever the exit status
    (Py_RunMain, _Py_UnhandledKeyboardInterrupt): a parent saw "killed by SIGINT" (-2) after a SIGTERM."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(130)


def _print_error(message: str, hint: str | None) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    if hint:
        click.echo(f"Hint: {hint}", err=True)


