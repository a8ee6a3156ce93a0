"""Which stacks `deployctl down` serves: only those whose processes run on this machine.

Its own module, not deployctl/targets/__init__.py: the gcp target refuses ``down`` with this same check, and
the package imports the gcp target (in open_target), so the target importing the package would be a circle.
"""

from __future__ import annotations

from deployctl.config import Stack
from deployctl.errors import UsageError


def check_down(stack: Stack) -> None:
    """`down` stops what a stack runs on this machine; a cloud stack's resources are Pulumi's to destroy.

    Offline: ``deployctl down`` runs it before opening the target, so a cloud stack is refused without
    needing pulumi or credentials."""
    if stack.target != "local":
        raise UsageError(f"`down` only stops local stacks; {stack.name} is a {stack.target} stack",
                         "Cloud resources are removed with `pulumi destroy` on purpose, not by deployctl.")
