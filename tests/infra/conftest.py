"""Synthesized stacks, shared by the infra tests (synthesis runs the real program under Pulumi mocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployctl.config import Release, Stack, effective, load, parse
from deployctl.targets.gcp.synth import Synthesis, synthesize

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "europe-central2-docker.pkg.dev/example/production-deployctl/api@sha256:" + "ab" * 32
WORKER_DIGEST = "europe-central2-docker.pkg.dev/example/production-deployctl/worker@sha256:" + "cd" * 32


def stack_with(name: str, edit: Any = None, *, stack: str | None = None) -> Stack:
    """The repository's stack *name*, its raw config edited by *edit(config)*, validated as *stack*. An edit may
    put a release under ``RELEASE``: it becomes the release deployctl's own `pulumi up` hands the program."""
    raw = effective(name, ROOT)  # the shared definition with the stack's overrides, as one document
    if edit is not None:
        edit(raw["config"])
    handed = raw["config"].pop(RELEASE, None)
    stack = stack or name
    parsed = parse(raw, stack=stack, file=f"stacks/Pulumi.{stack}.yaml")
    if handed is None:
        return parsed
    return parsed.model_copy(update={"release": Release.model_validate({"phase": "release", **handed})})


RELEASE = "release handed to pulumi up"  # where an edit puts it (never a key of a stack file)


def release(config: dict[str, Any]) -> None:
    """What deployctl hands its `pulumi up` (DEPLOYCTL_PULUMI_RELEASE): a canary at 90/10."""
    config[RELEASE] = {
        "images": {"api": DIGEST},
        "secret_versions": {"SECRET_KEY": "3", "DATABASE_URL": "5", "DB_PASSWORD": "2"},
        "revisions": {"api": "production-api-0123456789"},
        "traffic": {"api": [{"revision": "production-api-0123456789", "percent": 90, "tag": None},
                            {"revision": "production-api-old", "percent": 10, "tag": "previous"}]},
    }


@pytest.fixture(scope="session")
def staging() -> tuple[Stack, Synthesis]:
    stack = load("staging", ROOT)
    return stack, synthesize(stack)


@pytest.fixture(scope="session")
def production() -> tuple[Stack, Synthesis]:
    stack = stack_with("production", release)
    return stack, synthesize(stack)
