"""Targets: where a stack's releases run. ``open_target`` picks one by the stack's ``target`` setting.

Rule: the gcp target (and its Google and Pulumi imports) loads only when a gcp stack is used.
"""

from __future__ import annotations

from pathlib import Path

from deployctl.config import Stack
from deployctl.errors import DeployctlError
from deployctl.pipeline.target import Target


def open_target(stack: Stack, root: Path) -> Target:
    if stack.target == "local":
        from deployctl.targets.local.target import LocalTarget

        return LocalTarget(stack, root)
    from deployctl.targets.gcp.target import open_target as open_gcp

    target: Target = open_gcp(stack, root)
    return target


def check_down(stack: Stack) -> None:
    """`down` stops what a stack runs on this machine; a cloud stack's resources are Pulumi's to destroy.

    Offline: ``deployctl down`` runs it before opening the target, so a cloud stack is refused without
    needing pulumi or credentials."""
    if stack.target != "local":
        raise DeployctlError(f"`down` only stops local stacks; {stack.name} is a {stack.target} stack",
                             "Cloud resources are removed with `pulumi destroy` on purpose, not by deployctl.")
