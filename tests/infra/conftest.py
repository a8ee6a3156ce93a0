"""Synthesized stacks, shared by the infra tests (synthesis runs the real program under Pulumi mocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployctl.config import Stack, load, parse
from deployctl.targets.gcp.synth import Synthesis, synthesize

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "europe-central2-docker.pkg.dev/example/deployctl/api@sha256:" + "ab" * 32


def stack_with(name: str, edit: Any = None) -> Stack:
    """The repository's stack *name*, with its raw config edited by *edit(config)* and re-validated."""
    import yaml

    raw = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    if edit is not None:
        edit(raw["config"])
    return parse(raw, stack=name, file=f"stacks/Pulumi.{name}.yaml")


def released(name: str) -> Stack:
    def edit(config: dict[str, Any]) -> None:
        config["deployctl:release"] = {
            "images": {"api": DIGEST},
            "secret_versions": {"SECRET_KEY": "3", "DATABASE_URL": "5", "DB_PASSWORD": "2"},
            "revisions": {"api": "api-0123456789"},
            "traffic": {"api": [{"revision": "api-0123456789", "percent": 90, "tag": None},
                                {"revision": "api-old", "percent": 10, "tag": "previous"}]},
        }

    return stack_with(name, edit)


@pytest.fixture(scope="session")
def staging() -> tuple[Stack, Synthesis]:
    stack = load("staging", ROOT)
    return stack, synthesize(stack)


@pytest.fixture(scope="session")
def production() -> tuple[Stack, Synthesis]:
    stack = released("production")
    return stack, synthesize(stack)
