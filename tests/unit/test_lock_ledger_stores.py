"""One lock model and one ledger model, two stores each: the same behaviour suite runs against the local
files (lock.json under the flock mutex, SQLite) and against GCS objects (drongo's fake of Cloud Storage,
extended with generation preconditions in tests/fakes/drongo_ext.py, driven through the real client).

Holders are planted by writing the lock document straight into the medium (the file, the object), not
through the code under test."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from deployctl.errors import DeployctlError, LockedError
from deployctl.liveness import start_time
from deployctl.pipeline.ledger import StoredLedger
from deployctl.pipeline.lock import StoredLock
from deployctl.pipeline.model import ReleaseRecord
from deployctl.targets.gcp.state import GcsLedger, GcsLock
from deployctl.targets.local.state import FileLock, SqliteLedger
from tests.gcp.conftest import FAST
from tests.unit.conftest import BUCKET

HOST = socket.gethostname()

@dataclass
class Store:
    make: Callable[..., StoredLock[Any]]  # a lock of stack "s"; keyword arguments: warn
    plant: Callable[[dict[str, Any]], object]  # write a holder document into the medium directly


@pytest.fixture(params=["file", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: list[StoredLock[Any]] = []

    def keep(lock: StoredLock[Any]) -> StoredLock[Any]:
        made.append(lock)
        return lock

    if request.param == "file":
        yield Store(lambda **kw: keep(FileLock(tmp_path, "s", **kw)),
                    lambda doc: (tmp_path / "lock.json").write_text(json.dumps(doc)))
    else:
        client = request.getfixturevalue("gcs")
        blob = client.bucket(BUCKET).blob("deployctl/s/lock.json")
        yield Store(lambda **kw: keep(GcsLock(client, BUCKET, "s", FAST, **kw)),
                    lambda doc: blob.upload_from_string(json.dumps(doc)))
    for lock in made:  # a holder a test left behind must not heartbeat once the fake is gone
        lock._stop_heartbeat()


def holder_doc(lock_id: str, pid: int, started: float | None, host: str = HOST, beat: float | None = None) -> dict:
    now = time.time()
    return {"id": lock_id, "pid": pid, "host": host, "command": "deployctl up s", "since": now,
            "heartbeat": now if beat is None else beat, "pid_started": started}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


# -- the lock ---------------------------------------------------------------------------------------


def test_a_free_lock_is_taken_and_given_back(store: Store) -> None:
    lock = store.make()
    mine = lock.acquire("deployctl up s", timeout_s=0)
    assert lock.holder() == mine
    assert (mine.pid, mine.host, mine.pid_started) == (os.getpid(), HOST, start_time())
    assert not lock.is_stale(mine)
    lock.release(mine)
    assert lock.holder() is None


def test_a_live_holder_makes_the_caller_wait_then_fail_naming_it(store: Store) -> None:
    held = store.make().acquire("deployctl up s", timeout_s=0)
    began = time.monotonic()
    with pytest.raises(LockedError) as caught:
        store.make().acquire("deployctl up s --force", timeout_s=0.5)
    assert time.monotonic() - began >= 0.5
    assert caught.value.message.startswith(
        f"stack 's' is locked: lock {held.id} held by pid {os.getpid()} on {HOST} ('deployctl up s') since 0s ago"
    )
    assert caught.value.hint == (
        f"Wait for it to finish (--lock-timeout SECONDS), or if it is stuck: deployctl unlock s --force {held.id}"
    )
    assert caught.value.exit_code == 4


def test_a_waiter_gets_the_lock_once_the_holder_lets_go(store: Store) -> None:
    first = store.make()
    held = first.acquire("deployctl up s", timeout_s=0)
    timer = threading.Timer(0.3, first.release, [held])
    timer.start()
    mine = store.make().acquire("deployctl up s", timeout_s=10)
    timer.join()
    assert mine.id != held.id and first.holder() == mine


def test_a_holder_whose_process_is_gone_is_taken_over_with_a_warning(store: Store) -> None:
    gone = subprocess.Popen(["sleep", "60"])
    started = start_time(gone.pid)  # recorded, so a pid the kernel reuses meanwhile still reads as gone
    gone.kill()
    gone.wait()
    store.plant(holder_doc("deadbeef", gone.pid, started))
    warnings: list[str] = []
    lock = store.make(warn=warnings.append)
    planted = lock.holder()
    assert planted is not None and planted.id == "deadbeef" and lock.is_stale(planted)
    mine = lock.acquire("deployctl up s", timeout_s=0)
    assert lock.holder() == mine
    assert warnings == [f"recovered a stale deploy lock: lock deadbeef held by pid {gone.pid} on {HOST} "
                        f"('deployctl up s') is no longer running"]


def test_a_pid_reused_by_another_process_is_not_the_holder(store: Store, sleeper: subprocess.Popen[bytes]) -> None:
    store.plant(holder_doc("0ld", sleeper.pid, started=12345.0))  # a start time that is not the sleeper's
    lock = store.make(warn=lambda msg: None)
    planted = lock.holder()
    assert planted is not None and lock.is_stale(planted)
    assert lock.acquire("deployctl up s", timeout_s=0).id != "0ld"


def test_a_live_holder_on_this_host_is_not_stale(store: Store, sleeper: subprocess.Popen[bytes]) -> None:
    store.plant(holder_doc("b0b", sleeper.pid, start_time(sleeper.pid)))
    lock = store.make()
    planted = lock.holder()
    assert planted is not None and not lock.is_stale(planted)
    with pytest.raises(LockedError, match="lock b0b held by pid"):
        lock.acquire("deployctl up s", timeout_s=0)


def test_a_holder_on_another_host_is_left_to_a_person(store: Store) -> None:
    store.plant(holder_doc("e1sewhere", pid=1, started=0.0, host="ci-runner-7"))  # heartbeat: now
    lock = store.make()
    planted = lock.holder()
    assert planted is not None and not lock.is_stale(planted)
    with pytest.raises(LockedError) as caught:
        lock.acquire("deployctl up s", timeout_s=0)
    assert "deployctl unlock s --force e1sewhere" in (caught.value.hint or "")


def test_a_holder_written_by_a_newer_deployctl_still_holds(store: Store, sleeper: subprocess.Popen[bytes]) -> None:
    store.plant({**holder_doc("n3w", sleeper.pid, start_time(sleeper.pid)), "region": "added-later"})
    lock = store.make()
    planted = lock.holder()
    assert planted is not None and planted.id == "n3w"
    with pytest.raises(LockedError, match="lock n3w held by pid"):
        lock.acquire("deployctl up s", timeout_s=0)


def test_force_release_needs_the_holders_id(store: Store) -> None:
    lock = store.make()
    held = lock.acquire("deployctl up s", timeout_s=0)
    with pytest.raises(DeployctlError) as wrong:
        store.make().force_release("nope")
    assert wrong.value.message == f"stack 's' is held by lock {held.id}, not nope"
    assert wrong.value.hint == "Check `deployctl status s`; pass the id it shows to --force."
    assert lock.holder() == held  # refused: nothing changed
    assert store.make().force_release(held.id) == held
    assert lock.holder() is None
    with pytest.raises(DeployctlError, match="stack 's' is not locked"):
        lock.force_release(held.id)


def test_release_gives_back_only_a_lock_that_is_still_ours(store: Store) -> None:
    broken = store.make()
    old = broken.acquire("deployctl up s", timeout_s=0)
    store.make().force_release(old.id)  # someone broke it while its holder was stuck
    other = store.make()
    theirs = other.acquire("deployctl up s", timeout_s=0)
    broken.release(old)  # the stuck holder finishes late
    assert other.holder() == theirs


def test_of_racing_acquirers_exactly_one_wins(store: Store) -> None:
    for _ in range(3):
        locks = [store.make() for _ in range(4)]
        start = threading.Barrier(len(locks))
        won: list[str] = []
        refused: list[str] = []

        def race(lock: StoredLock[Any], won: list[str] = won, refused: list[str] = refused,
                 start: threading.Barrier = start) -> None:
            start.wait()
            try:
                won.append(lock.acquire("deployctl up s", timeout_s=0).id)
            except LockedError as exc:
                refused.append(exc.message)

        threads = [threading.Thread(target=race, args=(lock,)) for lock in locks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        holder = locks[0].holder()
        assert len(won) == 1 and len(refused) == 3 and holder is not None and holder.id == won[0]
        assert all(f"lock {won[0]} held by" in message for message in refused)
        locks[0].force_release(won[0])


def test_the_gcs_lock_heartbeats_so_a_long_holder_never_looks_stale(gcs: storage.Client) -> None:
    warnings: list[str] = []
    holder = GcsLock(gcs, BUCKET, "s", FAST, heartbeat_s=0.1, stale_after_s=0.6, warn=warnings.append)
    mine = holder.acquire("deployctl up s", timeout_s=0)
    time.sleep(1.2)  # twice the staleness limit
    seen = holder.holder()
    assert seen is not None and seen.id == mine.id and seen.heartbeat > mine.heartbeat + 0.6
    assert not holder.is_stale(seen)
    holder._stop_heartbeat()  # the holder hangs (or its machine goes away) without releasing
    time.sleep(0.8)
    hung = holder.holder()
    assert hung is not None and holder.is_stale(hung)  # although its process still runs here
    rescuer = GcsLock(gcs, BUCKET, "s", FAST, stale_after_s=0.6, warn=warnings.append)
    rescued = rescuer.acquire("deployctl up s", timeout_s=0)
    assert rescuer.holder() == rescued
    rescuer.release(rescued)  # before the checks: its heartbeat thread must not outlive a failing test
    assert len(warnings) == 1 and warnings[0].startswith(f"recovered a stale deploy lock: lock {mine.id} held by")
    # the age of the last beat, in whole seconds: 0.8 s of sleep, more on a loaded machine
    assert re.search(r"sent its last heartbeat \d+s ago$", warnings[0]), warnings[0]


def test_a_gcs_holder_whose_lock_was_broken_stops_heartbeating(gcs: storage.Client) -> None:
    warnings: list[str] = []
    holder = GcsLock(gcs, BUCKET, "s", FAST, heartbeat_s=0.05, warn=warnings.append)
    mine = holder.acquire("deployctl up s", timeout_s=0)
    try:
        _break(GcsLock(gcs, BUCKET, "s", FAST), mine.id)
        time.sleep(0.4)
        assert warnings == ["lost the deploy lock of 's' (someone broke it)"]
        assert holder.holder() is None  # the heartbeat did not write the broken lock back
    finally:  # its heartbeat thread must not outlive a failing test (the next test counts them)
        holder.release(mine)


def _break(lock: GcsLock, lock_id: str) -> None:
    """force_release, retried as its hint says when a heartbeat rewrote the lock between its read and its
    delete (a beat every 0.05 s can land there on a loaded machine)."""
    for _ in range(20):
        try:
            lock.force_release(lock_id)
            return
        except DeployctlError as exc:
            if "changed while breaking it" not in exc.message:
                raise
    raise AssertionError("the lock changed under every one of 20 attempts to break it")


def test_the_file_lock_does_not_heartbeat_so_age_alone_never_makes_it_stale(tmp_path: Path) -> None:
    lock = FileLock(tmp_path, "s")
    mine = lock.acquire("deployctl up s", timeout_s=0)
    # no heartbeat thread (StoredLock names it deployctl-lock-<stack>); counting every thread of the process
    # raced with threads other tests of the same worker were still ending
    assert lock._beat is None
    assert not [t for t in threading.enumerate() if t.name == "deployctl-lock-s"]
    time.sleep(0.1)
    assert lock.holder() == mine  # never rewritten
    lock.release(mine)
    (tmp_path / "lock.json").write_text(json.dumps(holder_doc("01d", os.getpid(), start_time(), beat=0.0)))
    ancient = lock.holder()
    assert ancient is not None and not lock.is_stale(ancient)


# -- the ledger -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "gcs"])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StoredLedger]:
    """Opens the stack's ledger anew each call, as a separate deployctl process would."""
    if request.param == "sqlite":
        return lambda: SqliteLedger(tmp_path / "ledger.db")
    client = request.getfixturevalue("gcs")
    return lambda: GcsLedger(client, BUCKET, "s", FAST)


def record(release_id: str, **kw: Any) -> ReleaseRecord:
    return ReleaseRecord(id=release_id, stack="s", kind="release", started=time.time(), command="deployctl up s",
                         **kw)


def test_ids_are_sequential_and_records_outlive_the_process(open_ledger: Callable[[], StoredLedger]) -> None:
    ledger = open_ledger()
    ids = [ledger.next_id() for _ in range(3)]
    assert ids == ["r0001", "r0002", "r0003"]
    for rid in ids:
        ledger.save(record(rid, outcome="succeeded", artifacts={"api": f"sha256:{rid}"}))
    reopened = open_ledger()
    assert [r.id for r in reopened.history()] == ["r0003", "r0002", "r0001"]
    got = reopened.get("r0002")
    assert got is not None and got.artifacts == {"api": "sha256:r0002"} and got.outcome == "succeeded"
    assert reopened.get("r0009") is None and reopened.get("") is None
    assert reopened.next_id() == "r0004"


def test_save_replaces_the_record_with_that_id(open_ledger: Callable[[], StoredLedger]) -> None:
    ledger = open_ledger()
    rid = ledger.next_id()
    ledger.save(record(rid))
    ledger.save(record(rid, outcome="failed", message="smoke failed"))
    assert [(r.id, r.outcome, r.message) for r in open_ledger().history()] == [(rid, "failed", "smoke failed")]


def test_a_reserved_but_unsaved_id_is_hidden_and_never_reused(open_ledger: Callable[[], StoredLedger]) -> None:
    ledger = open_ledger()
    assert ledger.next_id() == "r0001"  # its process dies before saving a record
    assert ledger.get("r0001") is None and ledger.history() == []
    assert open_ledger().next_id() == "r0002"


def test_two_concurrent_allocators_get_unique_sequential_ids(open_ledger: Callable[[], StoredLedger]) -> None:
    ledgers = [open_ledger(), open_ledger()]
    start = threading.Barrier(2)
    got: list[list[str]] = [[], []]

    def allocate(i: int) -> None:
        start.wait()
        got[i].extend(ledgers[i].next_id() for _ in range(8))

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == [f"r{n:04d}" for n in range(1, 17)]
    assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])  # each allocator's ids rise


def test_history_is_newest_first_by_number_and_limited(open_ledger: Callable[[], StoredLedger]) -> None:
    ledger = open_ledger()
    for rid in ("r0007", "r9999", "r10000", "r0008"):  # saved out of order; r10000 sorts after r9999
        ledger.save(record(rid))
    assert [r.id for r in ledger.history()] == ["r10000", "r9999", "r0008", "r0007"]
    assert [r.id for r in ledger.history(limit=2)] == ["r10000", "r9999"]
    assert ledger.next_id() == "r10001"
