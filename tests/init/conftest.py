"""Fixture repositories for ``deployctl init``: copies of tests/fixtures/byo/<name>, without deployctl's files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "byo"
WRITTEN = ["Pulumi.yaml", "infra/__main__.py", "Dockerfile.cloudrun", ".dockerignore", "cloudbuild.yaml",
           "stacks/Pulumi.local.yaml", "stacks/Pulumi.staging.yaml", "stacks/Pulumi.production.yaml"]


@pytest.fixture
def byo(tmp_path: Path):
    """``byo("django-pip")``: a fresh copy of that fixture repository, as a path."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
        return dest

    return copy


def report(stdout: str) -> tuple[list[str], list[str]]:
    """(detected lines, not-detected lines) of init's output, without their indentation."""
    detected, _, rest = stdout.partition("Not detected (set by hand):\n")
    undetected = rest.split("\n")
    lines = [line[2:] for line in detected.split("\n")[1:] if line.startswith("  ")]
    return lines, [line[2:] for line in undetected if line.startswith("  ")]


def copy_sources(dockerfile: str) -> list[str]:
    """Every source path of the Dockerfile's COPY instructions (not those from another stage)."""
    sources = []
    for line in dockerfile.splitlines():
        if re.match(r"COPY\s", line) and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources
