"""The local ledger and lock, in-process."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from deployctl.errors import DeployctlError, LockedError
from deployctl.pipeline.model import ReleaseRecord, StageResult
from deployctl.targets.local.state import FileLock, SqliteLedger


def test_ledger_numbers_releases_and_keeps_them(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ids = []
    for _ in range(3):
        rid = ledger.next_id()
        record = ReleaseRecord(id=rid, stack="s", kind="release", started=time.time(), command="deployctl up s")
        for _ in range(3):  # saved after every stage
            record.stages.append(StageResult("build", "ok", 0.1))
            ledger.save(record)
        ids.append(rid)
    assert ids == ["r0001", "r0002", "r0003"]
    reopened = SqliteLedger(tmp_path / "ledger.db")
    assert [r.id for r in reopened.history()] == ["r0003", "r0002", "r0001"]
    got = reopened.get("r0002")
    assert got is not None and len(got.stages) == 3 and got.stages[0].status == "ok"
    assert reopened.get("r0009") is None


def test_ledger_hides_reserved_but_unsaved_ids(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ledger.next_id()  # a process that died between reserving an id and saving its record
    assert ledger.history() == []
    assert ledger.next_id() == "r0002"


def test_lock_names_a_live_holder_and_recovers_a_dead_one(tmp_path: Path) -> None:
    warnings: list[str] = []
    lock = FileLock(tmp_path, "s", warn=warnings.append)
    mine = lock.acquire("deployctl up s", timeout_s=0)
    with pytest.raises(LockedError) as caught:
        FileLock(tmp_path, "s").acquire("deployctl up s", timeout_s=0.3)
    assert f"lock {mine.id} held by pid {mine.pid}" in caught.value.message
    assert caught.value.hint and f"deployctl unlock s --force {mine.id}" in caught.value.hint
    lock.release(mine)

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "lock.json").write_text(json.dumps({
        "id": "deadbeef", "pid": dead.pid, "host": socket.gethostname(), "command": "deployctl up s",
        "since": time.time(), "heartbeat": time.time(), "pid_started": None}))
    holder = lock.holder()
    assert holder is not None and lock.is_stale(holder)
    taken = lock.acquire("deployctl up s", timeout_s=0)
    assert taken.id != "deadbeef"
    assert warnings == [f"recovered a stale deploy lock: lock deadbeef held by pid {dead.pid} on "
                        f"{socket.gethostname()} ('deployctl up s') is no longer running"]


def test_force_release_needs_the_right_id(tmp_path: Path) -> None:
    lock = FileLock(tmp_path, "s")
    info = lock.acquire("deployctl up s", timeout_s=0)
    with pytest.raises(DeployctlError, match=f"held by lock {info.id}, not nope"):
        lock.force_release("nope")
    assert lock.force_release(info.id).id == info.id
    assert lock.holder() is None
    with pytest.raises(DeployctlError, match="is not locked"):
        lock.force_release(info.id)


def test_a_pid_reused_by_another_process_is_not_the_holder(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lock = FileLock(tmp_path, "s")
        (tmp_path / "lock.json").write_text(json.dumps({
            "id": "0ld", "pid": sleeper.pid, "host": socket.gethostname(), "command": "x",
            "since": 0, "heartbeat": 0, "pid_started": 12345.0}))  # recorded start time != the sleeper's
        holder = lock.holder()
        assert holder is not None and lock.is_stale(holder)
    finally:
        sleeper.kill()
        sleeper.wait()
