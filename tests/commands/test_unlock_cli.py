"""`unlock` without --force reports the lock's state by its exit code: 0 free, 4 locked; it changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deployctl.pipeline.lock import FileLock
from tests.cli_runner import RunCli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "stacks", tmp_path / "project" / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "project" / "Pulumi.yaml")  # the app's one definition
    monkeypatch.setenv("DEPLOYCTL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "project"


def test_unlock_without_force_exits_0_when_free_and_4_when_locked(
    project: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    free = run_cli(["unlock", "local"], project)
    assert (free.exit_code, free.stdout, free.stderr) == (0, "local is not locked.\n", "")

    lock = FileLock(tmp_path / "state" / "local", "local")
    holder = lock.acquire("deployctl up local", 0)  # held by this (live) process
    locked = run_cli(["unlock", "local"], project)
    assert (locked.exit_code, locked.stderr) == (4, "")
    assert locked.stdout == (f"local is locked: {holder.describe()}.\n"
                             f"Break it with: deployctl unlock local --force {holder.id}\n")
    assert lock.holder() == holder  # showing it broke nothing

    broken = run_cli(["unlock", "local", "--force", holder.id], project)
    assert (broken.exit_code, broken.stdout) == (0, f"Broke {holder.describe()}.\n")
    assert lock.holder() is None
    assert run_cli(["unlock", "local"], project).exit_code == 0
