"""Run ``deployctl`` in-process with click's CliRunner, through deployctl's real entry point.

CliRunner invokes a click command; invoking the bare group ``deployctl.cli.cli`` would skip
``deployctl.cli.main``, where DeployctlError becomes the ``Error:``/``Hint:`` lines and its exit code. So
the command CliRunner invokes here is ``main`` itself: the exit codes and messages tests pin are the ones
a user sees. CliRunner gives the isolation (its own stdin, stdout and stderr, kept apart since click 8.2)
and turns ``sys.exit`` into ``Result.exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import click
from click.testing import CliRunner, Result

from deployctl.cli import main


class _Entry(click.Command):
    """``deployctl.cli.main`` as the command CliRunner invokes (it calls ``Command.main``)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        main(list(args or []))  # returns on success; sys.exit(code) otherwise, as the console script does


ENTRY = _Entry("deployctl")


def invoke(args: list[str], input: str | None = None) -> Result:
    """Run ``deployctl ARGS`` in the working directory (deployctl finds the project from it).

    Exceptions other than SystemExit propagate: deployctl never shows a user a traceback without
    ``--debug``, so one here is a failure of the test, with its traceback."""
    return CliRunner(catch_exceptions=False).invoke(ENTRY, args, input=input)


class RunCli(Protocol):
    """The ``run_cli`` fixture (tests/conftest.py): ``invoke`` from the project directory *cwd*."""

    def __call__(self, args: list[str], cwd: Path, input: str | None = None) -> Result: ...
