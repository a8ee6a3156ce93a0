"""A damaged local ledger through the CLI: `status`, `releases` and `up` print one error naming the file and
the repair command and exit 5, write nothing, and start no release; `deployctl ledger repair` mends it and
then they work again. The damage is tests/unit/test_ledger_damage.py's, on a stack whose r0004 serves."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployctl.pipeline.ledger import SqliteLedger
from tests.cli_runner import RunCli
from tests.unit.test_ledger_damage import DAMAGE, seed
from tests.unit.test_ledger_damage import state_of as files_of

ROOT = Path(__file__).resolve().parents[2]
HINT = "Hint: Repair it: deployctl ledger repair local\n"


def state_of(directory: Path) -> dict[str, bytes]:
    """The stack's state files but the lock's (commands that take the lock make its mutex file)."""
    return {name: data for name, data in files_of(directory).items() if not name.startswith("lock.")}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "stacks", tmp_path / "project" / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "project" / "Pulumi.yaml")  # the app's one definition
    monkeypatch.setenv("DEPLOYCTL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "project"


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "local" / "ledger.db"
    seed(path)
    traffic = path.parent / "traffic" / "api.json"  # what r0004's promote left: it serves
    traffic.parent.mkdir()
    traffic.write_text(json.dumps({"splits": [{"revision": "api-00004-abc", "percent": 100, "port": 1}]}))
    return path


@pytest.mark.parametrize("damage", ["empty", "garbage header", "truncated", "bad JSON", "wrong types"])
def test_commands_stop_at_a_damaged_ledger_until_it_is_repaired(
    project: Path, ledger: Path, run_cli: RunCli, damage: str
) -> None:
    DAMAGE[damage][0](ledger)
    before = state_of(ledger.parent)
    error = "Error: " + DAMAGE[damage][1].format(file=ledger).replace("ledger repair s", "ledger repair local") + "\n"
    for command in (["status", "local"], ["releases", "local"], ["up", "local", "--lock-timeout", "0"]):
        result = run_cli(command, project)
        assert (result.exit_code, result.stdout, result.stderr) == (5, "", error + HINT), command
    assert state_of(ledger.parent) == before  # not a byte written, and `up` started nothing

    repaired = run_cli(["ledger", "repair", "local"], project)
    assert (repaired.exit_code, repaired.stderr) == (0, "")
    said = repaired.stdout.splitlines()
    assert said[0].startswith(f"Kept the damaged file as {ledger}.damaged-")
    assert said[-1].startswith(f"{ledger} now holds ")

    listed = run_cli(["releases", "local"], project)
    assert listed.exit_code == 0 and "r0004" in listed.stdout
    status = run_cli(["status", "local"], project)
    assert status.exit_code == 0 and "  serving    r0004 (api: api-00004-abc)\n" in status.stdout
    assert SqliteLedger(ledger).next_id() in {"r0005", "r0006"}  # after the highest id any copy held


def test_repair_of_a_good_ledger_changes_nothing(project: Path, ledger: Path, run_cli: RunCli) -> None:
    before = state_of(ledger.parent)
    result = run_cli(["ledger", "repair", "local"], project)
    said = f"{ledger} is not damaged: 5 records (r0001…r0005). Nothing to do.\n"
    assert (result.exit_code, result.stdout, result.stderr) == (0, said, "")
    assert state_of(ledger.parent) == before


def test_the_real_command_shows_no_traceback(project: Path, ledger: Path) -> None:
    DAMAGE["garbage header"][0](ledger)
    for command in (["releases", "local"], ["up", "local", "--lock-timeout", "0"]):
        done = subprocess.run([sys.executable, "-m", "deployctl", *command], cwd=project, capture_output=True,
                              text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout) == (5, "")
        assert done.stderr == f"Error: {ledger} is damaged (not an SQLite database)\n{HINT}"
