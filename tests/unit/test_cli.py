"""The CLI surface: every command has help, errors are one line plus a hint with a fixed exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from deployctl.cli import COMMANDS, cli, main


def _run(args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


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


def test_unknown_stack_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  deployctl:target: local\n")
    code, _out, err = _run(["status", "prod"], tmp_path, capsys)
    assert code == 3
    assert err == "Error: stacks/Pulumi.prod.yaml: no such stack file\nHint: Known stacks: dev.\n"


def test_bad_key_is_one_line_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  deployctl:target: local\n  deployctl:services:\n    api: {memroy: 1Gi}\n"
    )
    code, _out, err = _run(["up", "dev"], tmp_path, capsys)
    assert code == 3
    assert err == "Error: stacks/Pulumi.dev.yaml: deployctl:services.api.memroy: unknown key\n" \
                  "Hint: Did you mean 'memory'?\n"
    assert not (tmp_path / ".deployctl").exists()  # nothing was touched


@pytest.fixture
def no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pulumi CLI on PATH nor in Pulumi's own install directory, whatever this machine has."""
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi-home"))


@pytest.mark.usefixtures("no_pulumi")
def test_down_refuses_cloud_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    code, _, err = _run(["down", "staging"], root, capsys)
    assert code in (1, 5)  # 5 when the gcp target cannot open (no credentials/CLI) before the check
    assert err.startswith("Error: ")
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_pulumi")
def test_up_production_refuses_a_failing_mandatory_rule_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "stacks").mkdir()
    unsafe = (root / "stacks" / "Pulumi.production.yaml").read_text().replace(
        "high_availability: true", "high_availability: false")
    (tmp_path / "stacks" / "Pulumi.production.yaml").write_text(unsafe)
    code, _, err = _run(["up", "production"], tmp_path, capsys)
    assert code == 6
    assert err.startswith("Error: stack production fails mandatory policy rules: sql-ha\n")
    code, _, err = _run(["up", "production", "--accept-risk", "sql-ha"], tmp_path, capsys)
    assert code == 5  # past the gate; stops at the missing pulumi CLI, with its hint
    assert "Error: the pulumi CLI is not installed" in err and "Hint: Install the Pulumi CLI" in err
