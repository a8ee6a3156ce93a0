"""A stack name is checked where it enters (deployctl.config.stack_file), before any file is read or written.

Each bad name has a valid stack file planted where the name's path would lead (``x/../../evil`` reaches
``<project>/evil.yaml``), so a command that let the name through would load it and open its target, which
creates the stack's state directory from the same name: the listing would change.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli_runner import RunCli

ROOT = Path(__file__).resolve().parents[2]
BAD = ["x/../../evil", "../x", "UPPER", "-lead", "a b", "", "a/b", "local\n", "a_b", "a" * 64]
# every command that takes a stack; "{}" is where the name goes (after "--", so "-lead" is not an option)
COMMANDS = [
    ["up", "--dry-run", "--", "{}"],
    ["up", "--", "{}"],
    ["plan", "--", "{}"],
    ["audit", "--", "{}"],
    ["rollback", "--", "{}"],
    ["promote", "--", "{}", "local"],
    ["promote", "--", "local", "{}"],
    ["status", "--", "{}"],
    ["releases", "--", "{}"],
    ["down", "--purge", "--yes", "--", "{}"],
    ["unlock", "--", "{}"],
    ["unlock", "--force", "0000", "--", "{}"],
    ["secrets", "list", "--", "{}"],
    ["secrets", "set", "--", "{}", "DB_PASSWORD"],
    ["secrets", "rotate", "--", "{}", "SECRET_KEY"],
    ["bootstrap", "--dry-run", "--", "{}"],
]


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's stacks, a stack file planted at every bad name's path, state in <project>/.deployctl."""
    project = tmp_path / "work" / "project"
    shutil.copytree(ROOT / "stacks", project / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    local = (ROOT / "stacks" / "Pulumi.local.yaml").read_text()
    for name in BAD:
        if "\n" in name or len(name) > 63:
            continue  # no file system path to plant at
        if "/" in name:  # the first part must be a directory for the path to resolve
            (project / "stacks" / f"Pulumi.{name.split('/')[0]}").mkdir(exist_ok=True)
        Path(os.path.normpath(project / "stacks" / f"Pulumi.{name}.yaml")).write_text(local)
    assert (tmp_path / "work" / "project" / "evil.yaml").is_file()
    monkeypatch.delenv("DEPLOYCTL_STATE_DIR")  # the default: state under the project
    return project


def _shown(command: list[str]) -> str:
    return " ".join("STACK" if arg == "{}" else arg for arg in command if arg != "--")


@pytest.mark.parametrize("command", COMMANDS, ids=_shown)
@pytest.mark.parametrize("name", BAD, ids=repr)
def test_a_bad_stack_name_is_refused_before_any_file_is_touched(
    project: Path, run_cli: RunCli, command: list[str], name: str
) -> None:
    watched = project.parents[1]  # the project and what a "../" could reach
    before = _listing(watched)
    result = run_cli([name if arg == "{}" else arg for arg in command], project)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: stack name {name!r}: must be 1-63 lowercase letters, digits and hyphens, not starting with a hyphen\n"
        "Hint: The name picks stacks/Pulumi.<name>.yaml (see docs/configuration.md, Stack names).\n"
    )
    assert _listing(watched) == before
