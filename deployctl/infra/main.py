"""The Pulumi program's entry: ``run()`` loads the stack Pulumi runs and builds it.

A project's Pulumi.yaml says ``main: infra/`` and its ``infra/__main__.py`` is two lines that import this
installed module, so the program ships in deployctl's wheel and a project holds no copy of it. Pulumi runs
that file in the project's infra/ directory; the stack files are found from there up.
"""

from __future__ import annotations

import pulumi

from deployctl.config import load, project_root
from deployctl.errors import DeployctlError
from deployctl.infra.program import build


def run() -> None:
    try:
        build(load(pulumi.get_stack(), project_root()))
    except DeployctlError as exc:  # one clean line from `pulumi up`, not a Python traceback
        raise pulumi.RunError(f"{exc.message}. {exc.hint or ''}".strip()) from None
