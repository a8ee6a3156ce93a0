"""The GitHub workflow: valid YAML, Workload Identity Federation (never a key), the same checks as Cloud
Build, and a deployctl line the real CLI accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci.cli_lines import SAMPLE_IMAGE, deployctl_lines, parse_with_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def test_token_permissions_are_minimal(doc):
    assert doc["permissions"] == {"id-token": "write", "contents": "read"}


def test_auth_uses_workload_identity_federation_and_no_key(doc):
    auth = [s for s in _steps(doc) if str(s.get("uses", "")).startswith("google-github-actions/auth@")]
    assert [s["uses"] for s in auth] == ["google-github-actions/auth@v2"]
    assert set(auth[0]["with"]) == {"workload_identity_provider", "service_account"}
    assert "credentials_json" not in json.dumps(doc)


def test_installs_the_same_pulumi_as_cloud_build(doc):
    cloudbuild = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    [pulumi] = [s for s in _steps(doc) if str(s.get("uses", "")).startswith("pulumi/actions@")]
    assert pulumi["with"]["pulumi-version"] == cloudbuild["substitutions"]["_PULUMI_VERSION"]


def test_runs_the_same_checks_as_cloud_build(doc):
    checks = " ".join(doc["jobs"]["checks"]["strategy"]["matrix"]["check"])
    for tool in ("ruff check", "mypy deployctl", "bandit -r deployctl -ll", "pytest"):
        assert tool in checks
    assert doc["jobs"]["release"]["needs"] == "checks"


def test_the_release_line_parses_with_the_cli(doc):
    lines = deployctl_lines(str(s.get("run", "")) for s in _steps(doc))
    assert len(lines) == 1, lines
    ctx = parse_with_cli(lines[0])
    assert (ctx.command.name, ctx.params["stack"], ctx.params["image"]) == ("up", "staging", SAMPLE_IMAGE)
