"""The Pulumi program's entry: ``run()`` loads the stack Pulumi runs and builds it.

A project's Pulumi.yaml says ``main: infra/`` and its ``infra/__main__.py`` is two lines that import this
installed module, so the program ships in deployctl's wheel and a project holds no copy of it. Pulumi runs
that file in the project's infra/ directory; the stack files are found from there up.

What deployctl decides for a release (image digests, pinned versions, revision names, live traffic) comes
from the ``DEPLOYCTL_PULUMI_RELEASE`` environment variable of deployctl's own ``pulumi up``, never from a file; a
hand-run ``pulumi preview`` or ``up`` has none, and the program then leaves those fields to the state
(``Release.phase == "manual"``).
"""

from __future__ import annotations

import pulumi

from deployctl.config import load, project_root
from deployctl.errors import DeployctlError
from deployctl.infra.program import build, handed_release


def run() -> None:
    try:
        stack = load(pulumi.get_stack(), project_root())
        build(stack.model_copy(update={"release": handed_release(stack)}))
    except DeployctlError as exc:  # one clean line from `pulumi up`, not a Python traceback
        raise pulumi.RunError(f"{exc.message}. {exc.hint or ''}".strip()) from None
