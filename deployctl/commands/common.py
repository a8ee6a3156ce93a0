"""What the commands share: finding the project, loading a stack, opening its target, options."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from deployctl import config
from deployctl.pipeline.target import Target


def project_root() -> Path:
    """The nearest directory (from the working directory up) holding Pulumi.yaml or stacks/."""
    return config.project_root()


def open_stack(name: str, before_open: Callable[[config.Stack], None] | None = None) -> tuple[config.Stack, Target]:
    """Load the stack, run *before_open* (offline checks), then open its target (which may need tools)."""
    return open_stacks([name], before_open)[0]


def open_stacks(
    names: list[str], before_open: Callable[[config.Stack], None] | None = None
) -> list[tuple[config.Stack, Target]]:
    """Load every stack and run *before_open* on each before opening any target: opening a local target
    creates its state directory, so a bad name or file among several (``promote SRC DST``) changes nothing."""
    from deployctl.targets import open_target

    root = project_root()
    stacks = [config.load(name, root) for name in names]
    if before_open:
        for stack in stacks:
            before_open(stack)
    return [(stack, open_target(stack, root)) for stack in stacks]


@contextlib.contextmanager
def stack_to_plan(
    name: str, before_open: Callable[[config.Stack], None] | None = None
) -> Iterator[tuple[config.Stack, Target]]:
    """``open_stack`` for a command that only plans (``plan``, ``up --dry-run``): it writes nothing, not even
    a new stack's state directory (deployctl.targets.for_planning)."""
    from deployctl.targets import for_planning

    root = project_root()
    stack = config.load(name, root)
    if before_open:
        before_open(stack)
    with for_planning(stack, root) as target:
        yield stack, target


def command_line() -> str:
    return " ".join(["deployctl", *sys.argv[1:]])[:200]


def json_option(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


class Seconds(click.FloatRange):
    """A non-negative, finite number of seconds: ``nan`` passes every range check (and waited forever)."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return seconds


def lock_timeout_option(func: Any) -> Any:
    return click.option(
        "--lock-timeout",
        type=Seconds(),
        default=30.0,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for another deploy of this stack to finish.",
    )(func)
