"""``deployctl plan`` and ``deployctl audit``: exit codes, exact messages, and the JSON facts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from deployctl.targets.gcp.synth import GENERATED_VALUE
from tests.cli_runner import RunCli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's Pulumi.yaml and stacks (commands find the project from the working directory)."""
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")  # the app's one definition, which the stacks override
    return tmp_path


def test_plan_staging(project: Path, run_cli: RunCli) -> None:
    result = run_cli(["plan", "staging"], project)
    assert result.exit_code == 0
    out = result.stdout
    assert "staging-database" in out and "staging-api-service" in out
    assert "image=set at release" in out and "staging-SECRET_KEY@1 (the version this stack created)" in out
    assert "All mandatory policy rules pass." in out
    order = ["staging-apis", "staging-identities", "staging-registry", "staging-secrets", "staging-database",
             "staging-api", "staging-api-init", "staging-api-monitoring", "staging-build", "Outputs", "Policy"]
    at = [out.index(f"\n{heading}\n") for heading in order]  # components by dependency, then outputs, policy
    assert at == sorted(at)


def test_plan_staging_json(project: Path, run_cli: RunCli) -> None:
    result = run_cli(["plan", "staging", "--json"], project)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {"resources", "outputs", "policy", "components"} <= set(data)
    assert (data["kind"], data["stack"], data["target"]) == ("infrastructure", "staging", "gcp")  # the envelope
    assert data["outputs"]["db_connection"] == "example-staging:europe-central2:staging-db"
    assert data["outputs"]["job_names"] == {"migrate": "staging-api-migrate", "init": "staging-api-init"}
    assert data["policy"]["failing_mandatory"] == []
    assert "gcp:sql/databaseInstance:DatabaseInstance" in {r["type"] for r in data["resources"]}
    users = [r for r in data["resources"] if r["type"] == "gcp:sql/user:User"]
    assert sorted(u["inputs"]["name"] for u in users) == ["app", "app_b"]  # the role's two logins
    assert {u["inputs"]["password"] for u in users} == {"[secret]"}
    assert GENERATED_VALUE not in result.stdout  # the mocked secret value never reaches the plan


def test_plan_local_prints_the_release_plan(project: Path, run_cli: RunCli) -> None:
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    result = run_cli(["plan", "local"], project)
    assert result.exit_code == 0
    out = result.stdout
    assert "Stack local is a local stack: it has no cloud infrastructure" in out
    assert "migrate" in out and "deploy" in out


def test_plan_local_json_is_the_plan_up_dry_run_prints(project: Path, run_cli: RunCli) -> None:
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    planned = json.loads(run_cli(["plan", "local", "--json"], project).stdout)
    dry_run = json.loads(run_cli(["up", "local", "--dry-run", "--json"], project).stdout)
    assert planned == dry_run  # one plan object, one JSON shape
    assert (planned["kind"], planned["stack"], planned["target"]) == ("release", "local", "local")
    assert [s["name"] for s in planned["stages"]] == ["build", "migrate", "deploy", "smoke", "promote", "init"]
    assert [(s["service"], s["action"]) for s in planned["stages"][2]["steps"]] == [("api", "run")]


def _edit_staging(project: Path, key: str, value: object) -> None:
    path = project / "stacks" / "Pulumi.staging.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["config"][key] = value
    path.write_text(yaml.safe_dump(raw))


def test_plan_invalid_stack_names_file_and_key(project: Path, run_cli: RunCli) -> None:
    services = yaml.safe_load((project / "stacks" / "Pulumi.staging.yaml").read_text())["config"]["deployctl:services"]
    services["api"]["memory"] = "1GB"
    _edit_staging(project, "deployctl:services", services)
    result = run_cli(["plan", "staging"], project)
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: stacks/Pulumi.staging.yaml: deployctl:services.api.memory: '1GB' is not a size like 512Mi or 1Gi",
        "Hint: Write a whole number followed by Mi (mebibytes) or Gi (gibibytes), e.g. memory: 512Mi.",
    ]


def test_release_state_left_in_a_stack_file_by_an_older_deployctl_is_named_with_its_fix(
        project: Path, run_cli: RunCli) -> None:
    _edit_staging(project, "deployctl:release", {"secret_versions": {"SECRET_KEY": 1}})  # as `set-all --path` wrote it
    result = run_cli(["status", "staging"], project)
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: stacks/Pulumi.staging.yaml: deployctl:release: runtime state does not belong in a stack file",
        "Hint: Delete it: pulumi config rm --path deployctl:release --stack staging",
    ]


def test_plan_preview_without_pulumi(project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(project))  # no pulumi binary on this PATH
    monkeypatch.setenv("PULUMI_HOME", str(project))  # nor in Pulumi's own install directory
    result = run_cli(["plan", "staging", "--preview"], project)
    assert (result.exit_code, result.stdout) == (5, "")
    assert result.stderr.splitlines() == [
        "Error: the pulumi CLI is not installed (deployctl drives it for gcp stacks)",
        "Hint: Install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh, then `pulumi login`.",
    ]  # one line and its hint, no traceback


def test_audit_production_passes(project: Path, run_cli: RunCli) -> None:
    result = run_cli(["audit", "production"], project)
    assert result.exit_code == 0
    assert "24/24 rules pass; 0 finding(s)." in result.stdout


def _unsafe(project: Path) -> None:
    path = project / "stacks" / "Pulumi.production.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["config"]["deployctl:database"]["high_availability"] = False
    path.write_text(yaml.safe_dump(raw))


def test_audit_unsafe_production_fails_naming_the_rule(project: Path, run_cli: RunCli) -> None:
    _unsafe(project)
    result = run_cli(["audit", "production"], project)
    assert result.exit_code == 6
    err = result.stderr
    assert "Error: stack production fails mandatory policy rules: sql-ha" in err
    assert "Hint: Fix them, or accept a risk explicitly: deployctl up production --accept-risk RULE_ID" in err


def test_audit_accepted_risk_and_json(project: Path, run_cli: RunCli) -> None:
    _unsafe(project)
    result = run_cli(["audit", "production", "--accept-risk", "sql-ha", "--json"], project)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["accepted"] == ["sql-ha"] and data["failing_mandatory"] == []
    assert [f["rule"] for f in data["findings"] if f["mandatory"]] == ["sql-ha"]


def test_release_gate(project: Path) -> None:
    from deployctl.config import load
    from deployctl.errors import PolicyError
    from deployctl.targets.gcp.policy_gate import enforce

    _unsafe(project)
    stack = load("production", project)
    with pytest.raises(PolicyError) as exc:
        enforce(stack, [])
    assert exc.value.message == "stack production fails mandatory policy rules: sql-ha"
    enforce(stack, ["sql-ha"])  # accepted: no error
    with pytest.raises(PolicyError, match="unknown policy rule: sql-hq"):
        enforce(stack, ["sql-hq"])


def test_policy_pack_compiles() -> None:
    source = (ROOT / "deployctl" / "infra" / "policies" / "__main__.py").read_text()
    compile(source, "deployctl/infra/policies/__main__.py", "exec")
    assert os.path.isfile(ROOT / "deployctl" / "infra" / "policies" / "PulumiPolicy.yaml")
