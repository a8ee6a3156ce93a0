"""Every place this repository installs Python packages installs from uv.lock and resolves nothing anew:
through scripts/install (uv sync --frozen), or pip with --require-hashes over a file exported from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLERS = ["cloudbuild.yaml", ".github/workflows/deploy.yml", "Dockerfile.cloudrun", ".ci/run",
              "scripts/demo", "scripts/test", "scripts/install", "scripts/update-deps", "scripts/_venv.sh"]
PIP = re.compile(r"\bpip3? install\b[^\n]*")
UV_SYNC = re.compile(r"\buv\"? sync --[^\n]*")
RESOLVING = re.compile(r"\b(uv (pip install|add|run|tool install)|uvx|poetry install|pipenv)\b")


@pytest.mark.parametrize("rel", INSTALLERS)
def test_installs_only_from_the_lock(rel: str) -> None:
    text = (ROOT / rel).read_text()
    for line in PIP.findall(text):
        assert "--require-hashes" in line, f"{rel}: {line}"
    for line in UV_SYNC.findall(text):
        assert "--frozen" in line, f"{rel}: {line}"
    assert not RESOLVING.search(text), rel


def test_the_check_sees_an_unpinned_install() -> None:
    assert PIP.findall('run: pip install ".[gcp]"') == ['pip install ".[gcp]"']
    assert "--require-hashes" not in PIP.findall('run: pip install ".[gcp]"')[0]


def test_ci_and_cloud_build_use_the_same_installer() -> None:
    cloudbuild = (ROOT / "cloudbuild.yaml").read_text()
    workflow = (ROOT / ".github/workflows/deploy.yml").read_text()
    for text in (cloudbuild, workflow):
        assert "scripts/install --all-packages --all-extras --group dev" in text
        assert "scripts/install --no-dev --extra gcp --no-editable" in text
