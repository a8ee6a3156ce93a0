"""Pulumi entry point (``main: infra/`` in Pulumi.yaml): load the stack model, build the program."""

import sys
from pathlib import Path

import pulumi

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # Pulumi runs this file with infra/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))

from deployctl.config import load  # noqa: E402
from deployctl.errors import DeployctlError  # noqa: E402
from infra.program import build  # noqa: E402

try:
    build(load(pulumi.get_stack(), ROOT))
except DeployctlError as exc:  # one clean line from `pulumi up`, not a Python traceback
    raise pulumi.RunError(f"{exc.message}. {exc.hint or ''}".strip()) from None
