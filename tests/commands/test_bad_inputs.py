"""The last bad inputs (issue 17): each is one line with a fixed exit code, and changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli_runner import RunCli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's Pulumi.yaml and local stack (commands find the project from the working
    directory); its state goes in the project's .deployctl/, where _touched sees it."""
    monkeypatch.delenv("DEPLOYCTL_STATE_DIR", raising=False)
    (tmp_path / "project" / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "stacks" / "Pulumi.local.yaml", tmp_path / "project" / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "project" / "Pulumi.yaml")
    return tmp_path / "project"


def _touched(project: Path) -> list[str]:
    return sorted(p.name for p in project.iterdir() if p.name not in ("stacks", "app", "Pulumi.yaml"))


def test_a_stack_file_that_is_not_utf8_is_one_line_naming_the_byte(project: Path, run_cli: RunCli) -> None:
    stack = project / "stacks" / "Pulumi.local.yaml"
    text = stack.read_bytes()
    at = text.index(b"deployctl:target: local") + len(b"deployctl:target: ")
    stack.write_bytes(text[:at] + "caf\u00e9".encode("latin-1") + text[at + 5:])  # é as Latin-1: 0xE9
    result = run_cli(["status", "local"], project)
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == (f"Error: stacks/Pulumi.local.yaml: not valid UTF-8 (byte {at + 3}: 0xe9)\n"
                             "Hint: Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).\n")
    assert _touched(project) == []


@pytest.mark.parametrize("to", ["", "  "])
def test_an_empty_rollback_target_is_a_usage_error(project: Path, run_cli: RunCli, to: str) -> None:
    result = run_cli(["rollback", "local", "--to", to], project)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == "Error: Invalid value for '--to': must name a release, e.g. r0012"
    assert _touched(project) == []  # refused before the stack was opened


@pytest.mark.parametrize("value", ["nan", "inf", "NaN", "infinity"])  # -inf is below the range
@pytest.mark.parametrize("command", [["up", "local"], ["rollback", "local"], ["secrets", "rotate", "local", "X"],
                                     ["promote", "local", "local"], ["ledger", "repair", "local"]])
def test_a_lock_timeout_must_be_finite(project: Path, run_cli: RunCli, command: list[str], value: str) -> None:
    result = run_cli([*command, "--lock-timeout", value], project)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == \
        f"Error: Invalid value for '--lock-timeout': {value!r} is not a finite number of seconds."
    assert _touched(project) == []


@pytest.mark.parametrize(("key", "value", "path"), [
    ("rollout", "{steps: [100], drain_s: .nan}", "rollout.drain_s"),
    ("rollout", "{steps: [100], drain_s: .inf}", "rollout.drain_s"),
    ("smoke", "[{path: /, timeout_s: .NaN}]", "smoke.0.timeout_s"),
    ("smoke", "[{path: /, timeout_s: -.inf}]", "smoke.0.timeout_s"),
])
def test_a_stack_number_must_be_finite(project: Path, run_cli: RunCli, key: str, value: str, path: str) -> None:
    stack = project / "stacks" / "Pulumi.local.yaml"
    stack.write_text(stack.read_text() + f"  deployctl:{key}: {value}\n")
    result = run_cli(["status", "local"], project)
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr.splitlines()[0] == \
        f"Error: stacks/Pulumi.local.yaml: deployctl:{path}: must be a finite number (not .nan or .inf)"
    assert _touched(project) == []


@pytest.mark.parametrize("command", [["secrets", "set", "local", "NOPE"], ["secrets", "rotate", "local", "NOPE"]])
def test_an_unknown_secret_is_a_config_error_from_every_command(
    project: Path, run_cli: RunCli, command: list[str]
) -> None:
    result = run_cli(command, project, input="value")
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == ("Error: stacks/Pulumi.local.yaml: deployctl:secrets: no secret named 'NOPE'\n"
                             "Hint: Declared secrets: DATABASE_URL, DB_PASSWORD, SECRET_KEY.\n")


def test_bootstrap_of_a_local_stack_is_a_usage_error_like_down_of_a_gcp_one(project: Path, run_cli: RunCli) -> None:
    result = run_cli(["bootstrap", "local"], project)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == ("Error: stacks/Pulumi.local.yaml: stack local has target local; only gcp stacks are "
                             "bootstrapped\nHint: Local stacks need no bootstrap: deployctl up local\n")
    assert _touched(project) == []


@pytest.mark.parametrize("command", [["plan", "local"], ["plan", "local", "--json"], ["up", "local", "--dry-run"]])
def test_planning_a_new_stack_writes_nothing(project: Path, run_cli: RunCli, command: list[str]) -> None:
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    result = run_cli(command, project)
    assert result.exit_code == 0, result.stderr
    assert "create v1" in result.stdout  # planned as a new stack: every secret is still to be made
    assert _touched(project) == []  # no state directory, lock or ledger file
