"""A heal's record: what it mends is what served before it, so a rollback, a settlement and a lost database
treat it like what it is. (Found by a review of the heal and the ledger branches together.)"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deployctl.errors import LockedError
from deployctl.pipeline import orchestrator, rollback
from deployctl.pipeline.model import LockInfo, ReleaseRecord
from deployctl.pipeline.run import Options, serving_revisions
from deployctl.pipeline.target import DataLoss
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter

FAST = Latency(build_s=0.0, job_s=0.0, deploy_s=0.0, smoke_s=0.0)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LatencyTarget]:
    with smoke_server(0.0, set()) as url:
        yield LatencyTarget(make_stack(tmp_path, 2), tmp_path / "state", url, latency=FAST)


def up(target: LatencyTarget, force: bool = False, **options: bool) -> ReleaseRecord:
    return orchestrator.release(target, Options(command="deployctl up bench", force=force, **options),
                                QuietReporter())


def test_rollback_after_healing_a_rolled_back_stack_never_goes_forward(target: LatencyTarget) -> None:
    r1, r2, _ = up(target, True), up(target, True), up(target, True)
    rollback.rollback(target, None, Options(command="deployctl rollback bench"), QuietReporter())  # r2 serves
    target.dead.add(r2.revisions["svc1"])
    healed = up(target)
    assert (healed.kind, healed.outcome, healed.previous) == ("heal", "succeeded", r2.revisions)
    assert rollback.choose(target, None).id == r1.id  # what served before r2, as from the rollback it mended


def test_a_heal_stopped_by_a_signal_leaves_traffic_on_what_answers(tmp_path: Path) -> None:
    class Interrupted(LatencyTarget):
        stop_in_smoke: bool = False

        def smoke_auth(self, service: str) -> dict[str, str]:
            if self.stop_in_smoke:
                raise KeyboardInterrupt  # Ctrl-C while the replacement's smoke checks run
            return {}

    with smoke_server(0.0, set()) as url:
        target = Interrupted(make_stack(tmp_path, 2), tmp_path / "state", url, latency=FAST)
        up(target, True)
        r2 = up(target, True)
        target.dead.add(r2.revisions["svc1"])
        target.stop_in_smoke = True
        with pytest.raises(KeyboardInterrupt):
            up(target)
        target.stop_in_smoke = False
        up(target)  # settles the stopped heal first, then heals
    assert serving_revisions(target)["svc0"] == r2.revisions["svc0"]  # it answered all along: never moved


def test_a_live_heal_whose_lock_was_deleted_is_refused(target: LatencyTarget) -> None:
    me = LockInfo("gone", os.getpid(), socket.gethostname(), "deployctl up bench", time.time(), time.time(),
                  psutil.Process().create_time())
    target.ledger.save(ReleaseRecord(id=target.ledger.next_id(), stack="bench", kind="heal", started=time.time(),
                                     command="deployctl up bench", holder="gone", holder_lock=me))
    with pytest.raises(LockedError) as refused:
        up(target, True)
    assert refused.value.message.startswith("heal r0001 is still running")


def test_a_heal_over_a_database_accepted_as_empty_is_a_release_that_migrates(tmp_path: Path) -> None:
    class DbTarget(LatencyTarget):
        db_up: bool = True
        loss: DataLoss | None = None

        def database_healthy(self) -> bool | None:
            return self.db_up

        def database_lost(self) -> DataLoss | None:
            return self.loss

        def prepare(self, artifacts, secret_versions, *, infrastructure=True):  # type: ignore[no-untyped-def]
            self.db_up = True  # starts the server: on a lost data directory, a new empty one

    with smoke_server(0.0, set()) as url:
        target = DbTarget(make_stack(tmp_path, 1), tmp_path / "state", url, latency=FAST, migrate_to="0006")
        assert up(target).migration_after == "0006"
        target.db_up, target.head = False, None  # Postgres killed, its data directory lost; revisions answer
        target.loss = DataLoss("its data directory holds no database", "restore it")
        jobs = target.calls["job"]
        redone = up(target, accept_empty_database=True)
    assert (redone.kind, redone.accepted_risks) == ("release", ["empty-database"])
    assert target.calls["job"] > jobs and (redone.migration_before, redone.migration_after) == (None, "0006")
