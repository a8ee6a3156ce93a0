"""Targets: where a stack's releases run. ``open_target`` picks one by the stack's ``target`` setting.

Rule: the gcp target (and its Google and Pulumi imports) loads only when a gcp stack is used.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from deployctl.config import Stack
from deployctl.errors import UsageError
from deployctl.pipeline.target import Target


def open_target(stack: Stack, root: Path) -> Target:
    if stack.target == "local":
        from deployctl.targets.local.target import LocalTarget

        return LocalTarget(stack, root)
    from deployctl.targets.gcp.target import open_target as open_gcp

    target: Target = open_gcp(stack, root)
    return target


@contextlib.contextmanager
def for_planning(stack: Stack, root: Path) -> Iterator[Target]:
    """A target to plan against that writes nothing (``plan``, ``up --dry-run``).

    Opening a local stack makes its state directory and its ledger (the ledger exists before any other
    state, so a lost one is told from a new stack). A stack never used has no state to read, so its plan is
    made against an empty scratch directory that goes away with the plan."""
    if stack.target == "local":
        from deployctl.targets.local.paths import StatePaths
        from deployctl.targets.local.target import LocalTarget

        if not StatePaths.for_stack(root, stack.name).root.exists():
            with tempfile.TemporaryDirectory(prefix="deployctl-plan-") as scratch:
                yield LocalTarget(stack, root, StatePaths(Path(scratch) / stack.name))
            return
    yield open_target(stack, root)


def preflight(stack: Stack, accept_risks: tuple[str, ...]) -> None:
    """Offline checks a stack passes before its target is opened for a release: a gcp stack must pass the
    policy pack's mandatory rules or accept a rule's risk explicitly (no cloud, no pulumi needed)."""
    if stack.target == "gcp":
        from deployctl.targets.gcp.policy_gate import enforce

        enforce(stack, list(accept_risks))


def preview(stack: Stack, root: Path, on_output: Callable[[str], None]) -> str:
    """A live infrastructure diff (gcp: ``pulumi preview --diff``); returns its summary line."""
    if stack.target != "gcp":
        raise UsageError(f"stack {stack.name} is a {stack.target} stack: it has no infrastructure to preview",
                         f"See its release plan: deployctl plan {stack.name}")
    from deployctl.targets.gcp.engine import preview as pulumi_preview

    return pulumi_preview(stack.name, root, on_output)
