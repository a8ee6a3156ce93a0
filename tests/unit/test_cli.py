"""The CLI surface: every command has help, errors are one line plus a hint with a fixed exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from deployctl.cli import COMMANDS, cli
from tests.cli_runner import RunCli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_and_has_help(name: str) -> None:
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert command is not None, name
    assert command.help and len(command.help.strip()) > 20
    assert command.get_short_help_str()


def test_help_lists_every_command_without_importing_them() -> None:
    code = "import sys; from deployctl.cli import cli; cli(['--help'])"
    out = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True, check=False)
    for name in COMMANDS:
        assert f"  {name} " in out.stdout
    probe = "import sys, deployctl.cli as c\ntry:\n c.cli(['--help'])\nexcept SystemExit: pass\n" \
            "heavy=[m for m in sys.modules if m.startswith(('pulumi', 'google', 'rich', 'httpx', 'pydantic'))]\n" \
            "print('HEAVY:' + ','.join(heavy))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "HEAVY:"


def test_unknown_stack_is_a_config_error(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  deployctl:target: local\n")
    result = run_cli(["status", "prod"], tmp_path)
    assert result.exit_code == 3
    assert result.stderr == "Error: stacks/Pulumi.prod.yaml: no such stack file\nHint: Known stacks: dev.\n"


def test_bad_key_is_one_line_with_a_hint(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  deployctl:target: local\n  deployctl:services:\n    api: {memroy: 1Gi}\n"
    )
    result = run_cli(["up", "dev"], tmp_path)
    assert result.exit_code == 3
    assert result.stderr == "Error: stacks/Pulumi.dev.yaml: deployctl:services.api.memroy: unknown key\n" \
                            "Hint: Did you mean 'memory'?\n"
    assert not (tmp_path / ".deployctl").exists()  # nothing was touched


def test_a_relative_smoke_path_is_one_line_naming_the_file_and_key(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "stacks" / "Pulumi.local.yaml", tmp_path / "stacks")
    shipped = (ROOT / "Pulumi.yaml").read_text()  # the smoke checks are the app's, defined once for every stack
    assert shipped.count("path: /startup") == 1  # the second smoke check
    (tmp_path / "Pulumi.yaml").write_text(shipped.replace("path: /startup", "path: startup"))
    result = run_cli(["up", "local"], tmp_path)
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == 'Error: Pulumi.yaml: deployctl:smoke.1.path: must start with "/"\n' \
                            'Hint: Write the path from the root: "/startup".\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.yaml", "stacks"]  # nothing was touched


@pytest.fixture
def no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pulumi CLI on PATH nor in Pulumi's own install directory, whatever this machine has."""
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi-home"))


@pytest.mark.usefixtures("no_pulumi")
def test_down_refuses_cloud_stacks_before_opening_them(project: Path, run_cli: RunCli) -> None:
    result = run_cli(["down", "staging"], project)
    assert (result.exit_code, result.stdout) == (2, "")  # usage: the command does not apply to this stack
    assert result.stderr.splitlines() == [
        "Error: `down` only stops local stacks; staging is a gcp stack",
        "Hint: Cloud resources are removed with `pulumi destroy` on purpose, not by deployctl.",
    ]


@pytest.mark.usefixtures("no_pulumi")
def test_up_production_refuses_a_failing_mandatory_rule_before_touching_anything(
    tmp_path: Path, run_cli: RunCli
) -> None:
    (tmp_path / "stacks").mkdir()
    unsafe = (ROOT / "stacks" / "Pulumi.production.yaml").read_text().replace(
        "high_availability: true", "high_availability: false")
    (tmp_path / "stacks" / "Pulumi.production.yaml").write_text(unsafe)
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    result = run_cli(["up", "production"], tmp_path)
    assert result.exit_code == 6
    assert result.stderr.startswith("Error: stack production fails mandatory policy rules: sql-ha\n")
    result = run_cli(["up", "production", "--accept-risk", "sql-ha"], tmp_path)
    assert result.exit_code == 5  # past the gate; stops at the missing pulumi CLI, with its hint
    err = result.stderr
    assert "Error: the pulumi CLI is not installed" in err and "Hint: Install the Pulumi CLI" in err
