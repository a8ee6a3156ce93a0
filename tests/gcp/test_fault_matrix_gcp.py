"""The fault matrix on the gcp target, through the twin's fakes (issue 12's rows that a Cloud Run release
can meet): a release interrupted at a marked stage, then the five invariants tests/e2e/test_fault_matrix.py
checks on the local target.

How an interruption is made here, in one process:
- **SIGINT**: when the marked call reaches the fake, the test process gets a real SIGINT; Python raises
  KeyboardInterrupt in the main thread, where the release runs, exactly as `deployctl` gets it on Ctrl-C.
- **kill -9**: the release runs in a thread of its own; when it is about to send the marked call, the
  thread stops there for good (it makes no further call, as a killed process makes none) and the lock's
  heartbeat stops, as the process's would. The next command finds the lock stale (Cloud Storage holds the
  last heartbeat), takes it over and settles the dead run.

The invariants after every row:
1. traffic is on a revision that passed smoke (the revision a succeeded run recorded);
2. the lock is free;
3. the ledger is readable and matches what serves (``serving_release``);
4. a rerun converges: `up` succeeds or has nothing to do, a second `up` is a no-op, and no revision was
   made twice;
5. the canary secret (SECRET_KEY's value) appears in no output and in no object of the state bucket.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

from deployctl.errors import LockedError, LockLost, StageFailed
from deployctl.pipeline import orchestrator, rotate
from deployctl.pipeline.run import serving_release
from deployctl.pipeline.status import stack_status
from tests.fakes import drongo_ext
from tests.fakes.reporter import QuietReporter
from tests.gcp.conftest import IMAGE, IMAGE2, SERVICE, Cloud

pytestmark = pytest.mark.twin

CANARY = "tok_canary_3b9d71c4e2"
STEPS = "steps: [10, 50, 100]"


def _canary_split_rollout(cloud: Cloud) -> None:
    path = cloud.root / "Pulumi.yaml"  # the shared rollout, which staging does not override
    text = path.read_text().replace("steps: [100]", STEPS)
    assert STEPS in text
    path.write_text(text)


def _serving(cloud: Cloud, reporter: QuietReporter) -> Any:
    """A serving release whose SECRET_KEY is the canary."""
    _canary_split_rollout(cloud)
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    assert first.outcome == "succeeded"
    assert rotate.rotate(cloud.target(), "SECRET_KEY", CANARY, cloud.options(None), reporter).outcome == "succeeded"
    return first


def _is_candidate_create(method: str, request: Any) -> bool:
    return method == "UpdateService" and any(t.tag == "candidate" and not t.percent for t in request.service.traffic)


def _is_mid_split(method: str, request: Any) -> bool:
    """The 50 % step: the 10 % step before it has moved some users already."""
    return method == "UpdateService" and sorted(t.percent for t in request.service.traffic if t.percent) == [50, 50]


MARKS: dict[str, Callable[[str, Any], bool]] = {"deploy": _is_candidate_create, "promote": _is_mid_split}


def _sigint_at(cloud: Cloud, stage: str) -> None:
    fired = threading.Event()

    def interrupt(*_: Any) -> None:
        if not fired.is_set():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)

    if stage in ("migrate", "init"):
        drongo_ext.JOBS.before_run = lambda job: interrupt() if job.endswith(f"-{stage}") else None
    else:
        cloud.grpc.before = lambda method, request: interrupt() if MARKS[stage](method, request) else None


def _killed_at(cloud: Cloud, stage: str, reporter: QuietReporter) -> threading.Thread:
    """Start a release that dies at *stage*: the marked call never leaves and its heartbeat stops.

    The call is stopped in the release's own thread, before it is sent, and stays stopped: a killed process
    makes no further call. (Stopping it in the fake's server instead let the client's own deadline, 5 s,
    end the wait; under load the rerun took longer than that, and the "dead" release went on, recording a
    failure over the ``interrupted`` its successor had settled it as.) The thread is a daemon, left
    blocked when the test ends, as a dead process leaves nothing to clean up.
    """
    dead = threading.Event()
    release_thread: list[threading.Thread] = []

    def die(method: str, request: Any) -> None:
        if dead.is_set() or MARKS[stage](method, request):
            assert threading.current_thread() in release_thread, "the marked call left from a worker thread"
            target.lock._stop_heartbeat()  # the process is gone: nobody renews the lock
            dead.set()
            threading.Event().wait()  # never set: the request is never sent, the thread never runs again

    target = cloud.target(sending=die)
    thread = threading.Thread(target=lambda: orchestrator.release(target, cloud.options(IMAGE2), reporter),
                              name="killed-release", daemon=True)
    release_thread.append(thread)
    thread.start()
    assert dead.wait(120), f"the release never reached {stage}"
    return thread


def _check_invariants(cloud: Cloud, reporter: QuietReporter, first: Any) -> None:
    target = cloud.target()
    history = target.ledger.history()  # 3. readable
    # 1. traffic is on a revision a succeeded run smoke-tested
    passed = {r.revisions["api"] for r in history if r.outcome == "succeeded"} | {first.revisions["api"]}
    live = {rev for rev, percent in cloud.run.serving(SERVICE).items() if percent}
    assert live and live <= passed, (live, passed)
    # 2. the lock is free once the command that recovered has finished
    assert target.lock.holder() is None
    # 3. ... and matches what serves
    serving = serving_release(target)
    assert serving is not None and {serving.revisions["api"]} == live
    assert not [r for r in history if r.outcome == "running"]
    # 4. a rerun converges: a release (or nothing to do), then nothing to do; no revision made twice
    rerun = orchestrator.release(cloud.target(), cloud.options(IMAGE2), reporter)
    assert rerun.outcome in ("succeeded", "noop")
    assert orchestrator.release(cloud.target(), cloud.options(IMAGE2), reporter).outcome == "noop"
    names = cloud.run.revision_names(SERVICE)
    assert len(names) == len(set(names))
    images = [cloud.run.revisions[f"{SERVICE}/revisions/{n}"].containers[0].image for n in names]
    pins = [tuple(sorted((e.name, e.value_source.secret_key_ref.version)
                         for e in cloud.run.revisions[f"{SERVICE}/revisions/{n}"].containers[0].env if e.value_source))
            for n in names]
    assert len(set(zip(images, pins, strict=True))) == len(names)  # one revision per (image, pins)
    # 5. the canary is in no output and in no object of the state bucket
    assert not [line for line in reporter.lines if CANARY in line]
    backend = drongo_ext.PreconditionStorage(drongo_ext.gcs_urls.url_bases, {}).backend
    for blob in backend.buckets["example-staging-deployctl"].blobs.values():
        assert CANARY.encode() not in blob.data


@pytest.mark.parametrize("stage", ["migrate", "deploy", "promote", "init"])
def test_sigint_at_a_stage_settles_the_release_and_a_rerun_converges(cloud: Cloud, stage: str) -> None:
    reporter = QuietReporter()
    first = _serving(cloud, reporter)
    _sigint_at(cloud, stage)
    with pytest.raises(KeyboardInterrupt):
        orchestrator.release(cloud.target(), cloud.options(IMAGE2), reporter)
    cloud.grpc.before, drongo_ext.JOBS.before_run = None, None
    interrupted = cloud.target().ledger.history()[0]
    assert f"stopped by a signal during {stage}" in interrupted.message
    # stopped after its traffic switch (init) it serves, and is a success; stopped before, it is interrupted
    assert interrupted.outcome == ("succeeded" if stage == "init" else "interrupted")
    if stage in ("migrate", "init"):  # a Cloud Run execution is not the command's: it was left running, and said so
        assert f"its {stage} job was left running where it runs" in interrupted.message
    # traffic never stays split: a promote stopped at 50 % went back to the release that served fully
    assert cloud.run.serving(SERVICE) == {serving_release(cloud.target()).revisions["api"]: 100}
    _check_invariants(cloud, reporter, first)


@pytest.mark.parametrize("stage", ["deploy", "promote"])
def test_a_release_killed_at_a_stage_is_settled_by_the_next_command(cloud: Cloud, stage: str) -> None:
    reporter = QuietReporter()
    first = _serving(cloud, reporter)
    killed = _killed_at(cloud, stage, reporter)
    if stage == "promote":  # the 10 % step went through before the process died: users are split
        assert sorted(cloud.run.serving(SERVICE).values()) == [10, 90]
    target = cloud.target()
    target.lock.stale_after_s = 0.3  # its heartbeat stopped with the process; the test need not wait 10 min
    next_reporter = QuietReporter()
    rerun = orchestrator.release(target, cloud.options(IMAGE2), next_reporter)
    assert rerun.outcome == "succeeded"
    warnings = [line for line in next_reporter.lines if line.startswith("warning:")]
    assert any("interrupted" in line for line in warnings), next_reporter.lines
    dead = next(r for r in cloud.target().ledger.history() if r.id != rerun.id and r.kind == "release"
                and r.outcome == "interrupted")
    if stage == "promote":
        assert "traffic went back" in dead.message
    reporter.lines += next_reporter.lines
    _check_invariants(cloud, reporter, first)
    assert killed.is_alive()  # still stopped at its call: nothing above came from the dead release


def test_a_deleted_lock_object_is_noticed_by_its_holder_and_by_the_next_command(cloud: Cloud) -> None:
    reporter = QuietReporter()
    first = _serving(cloud, reporter)
    serving = dict(cloud.run.serving(SERVICE))
    reached, go = threading.Event(), threading.Event()

    def hold(method: str, request: Any) -> None:  # the release waits at its candidate, alive, holding the lock
        if _is_candidate_create(method, request) and not reached.is_set():
            reached.set()
            go.wait(30)

    cloud.grpc.before = hold
    ended: list[BaseException] = []
    thread = threading.Thread(target=lambda: _keep_error(ended, lambda: orchestrator.release(
        cloud.target(), cloud.options(IMAGE2), reporter)), daemon=True)
    thread.start()
    try:
        assert reached.wait(30), "the release never reached its candidate"
        cloud.storage.bucket("example-staging-deployctl").blob("deployctl/staging/lock.json").delete()

        with pytest.raises(LockedError) as refused:  # the lock is free, but the run under it is alive
            orchestrator.release(cloud.target(), cloud.options(IMAGE2), QuietReporter())
        running = cloud.target().ledger.history()[0]
        assert running.outcome == "running"  # not settled
        assert refused.value.message == (f"release {running.id} is still running (pid {os.getpid()}), but the "
                                         "deploy lock it took is gone")
    finally:
        cloud.grpc.before = None
        go.set()
        thread.join(30)
    (lost,) = ended  # the holder stopped before its next step, with the lock's loss as the cause
    assert isinstance(lost, StageFailed) and isinstance(lost.cause, LockLost)
    assert lost.cause.message == "lost the deploy lock of 'staging' (it was deleted or broken)"
    record = cloud.target().ledger.get(running.id)
    assert record is not None and record.outcome == "interrupted"
    assert [s.name for s in record.stages][-1] == "smoke"  # deploy finished; smoke never ran
    assert cloud.run.serving(SERVICE) == serving  # traffic never moved
    _check_invariants(cloud, reporter, first)


def _keep_error(ended: list[BaseException], fn: Callable[[], Any]) -> None:
    try:
        fn()
    except BaseException as exc:  # whatever ended the thread, the test reads it
        ended.append(exc)


def test_a_deleted_ledger_object_is_seen_as_such_and_the_next_release_converges(cloud: Cloud) -> None:
    """Issue 17 on the twin: the serving release's record is deleted from the state bucket (by hand, by a
    lifecycle rule). Status says that no recorded release serves, never names another one; traffic stays on
    the revision that answers; the next release splits with it, succeeds and records itself."""
    reporter = QuietReporter()
    first = _serving(cloud, reporter)
    target = cloud.target()
    serving = target.ledger.history()[0]
    live = dict(cloud.run.serving(SERVICE))
    cloud.storage.bucket("example-staging-deployctl").blob(f"deployctl/staging/releases/{serving.id}.json").delete()

    status = stack_status(cloud.target())
    assert (status["serving_release"], status["revisions"]) == (None, {"api": serving.revisions["api"]})
    assert [r.id for r in cloud.target().ledger.history()] == [first.id]  # what is left is readable
    assert cloud.run.serving(SERVICE) == live  # reading changed nothing

    again = orchestrator.release(cloud.target(), cloud.options(IMAGE2), reporter)
    assert again.outcome == "succeeded" and again.previous == {"api": serving.revisions["api"]}
    assert again.id != first.id and cloud.target().ledger.get(again.id) == again
    _check_invariants(cloud, reporter, first)
