"""Adapter-level checks on the fakes for what the pipeline does not reach on its own."""

from __future__ import annotations

import pytest

from deployctl.errors import LockedError
from deployctl.pipeline.model import JobState
from deployctl.targets.gcp.retry import RetryPolicy
from deployctl.targets.gcp.run_jobs import JobSpec
from deployctl.targets.gcp.state import GcsLock
from tests.fakes import drongo_ext
from tests.fakes.engine import FakeEngine
from tests.gcp.conftest import IMAGE, Cloud


def _jobs_ready(cloud: Cloud):
    target = cloud.target()
    FakeEngine(target.stack, cloud.run, cloud.pulumi).up(
        target._release({"api": IMAGE}, {"DATABASE_URL": "1", "SECRET_KEY": "1"}, {"api": "staging-api-x"})
    )
    return target


def test_rerun_of_a_release_attaches_to_its_running_migration(cloud: Cloud) -> None:
    target = _jobs_ready(cloud)
    drongo_ext.JOBS.polls_running["staging-api-migrate"] = 3
    first = target.jobs.run("staging-api-migrate", JobSpec(IMAGE), "r0007", deadline_s=0)  # gives up waiting at once
    assert first.state is JobState.RUNNING and "still running" in first.message
    second = target.jobs.run("staging-api-migrate", JobSpec(IMAGE), "r0007", deadline_s=5)
    assert second.succeeded and second.execution == first.execution
    runs = [c for c in drongo_ext.RECORDER.calls if c[0] == "run_job"]
    assert len(runs) == 1
    assert second.log and second.log.startswith("https://console.cloud.google.com/")


def test_a_new_release_starts_its_own_execution(cloud: Cloud) -> None:
    target = _jobs_ready(cloud)
    one = target.jobs.run("staging-api-migrate", JobSpec(IMAGE), "r0001", deadline_s=5)
    two = target.jobs.run("staging-api-migrate", JobSpec(IMAGE), "r0002", deadline_s=5)
    assert one.execution != two.execution and one.succeeded and two.succeeded


def test_stale_lock_is_taken_over_and_a_live_one_names_its_holder(cloud: Cloud) -> None:
    policy = RetryPolicy(deadline_s=1, initial_s=0.01)
    warnings: list[str] = []
    crashed = GcsLock(cloud.storage, "example-staging-deployctl", "staging", policy, heartbeat_s=3600)
    held = crashed.acquire("deployctl up staging", 1)
    crashed._stop_heartbeat()  # the holder dies without releasing
    live = GcsLock(cloud.storage, "example-staging-deployctl", "staging", policy, stale_after_s=60)
    with pytest.raises(LockedError) as locked:
        live.acquire("deployctl up staging", 0.1)
    assert held.id in locked.value.message and f"--force {held.id}" in (locked.value.hint or "")
    impatient = GcsLock(
        cloud.storage, "example-staging-deployctl", "staging", policy, stale_after_s=0, warn=warnings.append
    )
    mine = impatient.acquire("deployctl up staging", 1)
    assert mine.id != held.id and impatient.holder().id == mine.id
    assert warnings and held.id in warnings[0]
    impatient.release(mine)
    assert impatient.holder() is None
