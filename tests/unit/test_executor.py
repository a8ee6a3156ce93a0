"""The plan is the run: one object made under the lock, rendered by --dry-run/plan/the ledger and executed;
per-service steps overlap; a failing service cancels the rest and leaves traffic where it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator, rollback
from deployctl.pipeline import run as runmod
from deployctl.pipeline.executor import Executor
from deployctl.pipeline.model import ReleaseRecord, Split
from deployctl.pipeline.plan import Context
from deployctl.pipeline.run import Options
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter

FAST = Latency(build_s=0.05, job_s=0.0, deploy_s=0.2, smoke_s=0.0)


@pytest.fixture
def fail_smoke() -> set[str]:
    return set()


@pytest.fixture
def target(tmp_path: Path, fail_smoke: set[str]) -> Iterator[LatencyTarget]:
    with smoke_server(0.0, fail_smoke) as url:
        yield LatencyTarget(make_stack(tmp_path, 3), tmp_path / "state", url, latency=FAST)


def options(**kw: object) -> Options:
    return Options(**{"command": "deployctl up bench", **kw})  # type: ignore[arg-type]


def test_the_dry_run_and_the_ledger_show_the_plan_that_runs(target: LatencyTarget) -> None:
    plan = orchestrator.plan_release(target, options())
    assert target.calls == {}  # planning is read-only
    shown = plan.to_dict()
    assert shown["kind"] == "release" and shown["facts"] == {  # docs/architecture.md: the plan's JSON shape
        "source_hashes": plan.facts.source_hashes, "secret_versions": plan.facts.secret_versions,
        "fingerprint": plan.facts.fingerprint, "serving_release": None, "previous": {}}
    assert [s["name"] for s in shown["stages"]] == ["build", "migrate", "deploy", "smoke", "promote", "init"]
    deploys = [step for step in shown["stages"][2]["steps"]]
    assert [(d["service"], d["action"]) for d in deploys] == [("svc0", "run"), ("svc1", "run"), ("svc2", "run")]
    record = orchestrator.release(target, options(), QuietReporter())
    planned = [step for stage in shown["stages"] for step in stage["steps"]]
    assert record.plan == planned  # the ledger holds the very steps --dry-run printed
    assert [s.name for s in record.stages] == ["build", "migrate", "deploy", "smoke", "promote", "init"]
    assert record.outcome == "succeeded"
    assert {svc: target.traffic(svc) for svc in record.revisions} == {
        svc: [Split(rev, 100)] for svc, rev in record.revisions.items()}


def test_a_release_runs_the_artifacts_and_secret_versions_its_plan_shows(tmp_path: Path) -> None:
    with smoke_server(0.0, set()) as url:
        target = LatencyTarget(make_stack(tmp_path, 2, secrets=("NEW", "OLD")), tmp_path / "state", url,
                               latency=FAST, secrets={"OLD": ["1"]})
        orchestrator.release(target, options(), QuietReporter())  # builds svc0 and svc1; NEW gets v1
        target.secrets = {"OLD": ["1"]}  # NEW is gone again: the next plan creates it
        plan = orchestrator.plan_release(target, options(force=True))
        assert plan.lines()[:3] == [("build", "reuse svc0@1"), ("build", "reuse svc1@1"),
                                    ("build", "pin secrets NEW (create v1), OLD v1")]
        target.secrets["OLD"].append("2")  # added after the plan was shown
        target._built.clear()  # a lookup now would find no artifact and build again
        builds = target.calls["build"]
        with runmod.locked(target, options(), QuietReporter()) as lock_id:  # each wave checks the lock is held
            record = runmod.new_record(target, "release", options(), lock_id)
            Executor(QuietReporter()).execute(plan, Context(target, record, options(), previous=plan.facts.previous))

    assert target.calls["build"] == builds and record.artifacts == {"svc0": "svc0@1", "svc1": "svc1@1"}
    assert record.secret_versions == {"NEW": "1", "OLD": "1"}  # as planned, not the newer OLD v2


def test_per_service_steps_run_at_the_same_time(target: LatencyTarget) -> None:
    orchestrator.release(target, options(), QuietReporter())
    assert target.calls["build"] == 3 and target.calls["deploy"] == 3
    assert target.peak["build"] == 3 and target.peak["deploy"] == 3


def test_the_worker_count_bounds_the_overlap(target: LatencyTarget) -> None:
    orchestrator.release(target, options(workers=2), QuietReporter())
    assert target.peak["deploy"] == 2 and target.calls["deploy"] == 3


def test_one_failing_deploy_discards_the_others_and_moves_no_traffic(target: LatencyTarget) -> None:
    first = orchestrator.release(target, options(), QuietReporter())
    target._built.clear()  # a new build of every service
    target.fail_deploy.add("svc1")
    with pytest.raises(StageFailed) as failed:
        orchestrator.release(target, options(force=True), QuietReporter())
    assert failed.value.stage == "deploy" and not failed.value.rolled_back
    assert failed.value.serving == first.revisions  # typed: what serves now, not parsed from the message
    assert str(failed.value.cause.message) == "svc1: the startup probe did not pass"
    assert sorted(target.discarded) == ["svc0-r0002", "svc2-r0002"]
    assert {svc: [s.revision for s in target.traffic(svc)] for svc in first.revisions} == {
        svc: [rev] for svc, rev in first.revisions.items()}
    assert target.ledger.get("r0002").outcome == "failed"  # type: ignore[union-attr]


def test_a_failing_service_url_rolls_every_service_back(target: LatencyTarget, fail_smoke: set[str]) -> None:
    first = orchestrator.release(target, options(), QuietReporter())
    fail_smoke.add("svc2")  # svc2's candidate passes its own checks, then fails behind the service URL
    with pytest.raises(StageFailed) as failed:
        orchestrator.release(target, options(force=True), QuietReporter())
    assert failed.value.stage == "promote" and failed.value.rolled_back
    assert failed.value.serving == first.revisions
    assert {svc: target.traffic(svc) for svc in first.revisions} == {
        svc: [Split(rev, 100)] for svc, rev in first.revisions.items()}
    assert target.ledger.get("r0002").outcome == "rolled_back"  # type: ignore[union-attr]
    assert "rolled back automatically to" in failed.value.message


def test_rollback_is_one_switch_per_service_and_is_a_plan_too(target: LatencyTarget) -> None:
    first = orchestrator.release(target, options(), QuietReporter())
    second = orchestrator.release(target, options(force=True), QuietReporter())
    plan, goal = rollback.plan_rollback(target, None)
    assert goal.id == first.id and [s.name for s in plan.stages] == ["promote"]
    assert plan.to_dict()["kind"] == "rollback" and plan.to_dict()["facts"] == {
        "to": first.id, "revisions": first.revisions, "previous": second.revisions, "repin": False,
        "unusable_versions": [], "migrations_crossed": [], "accepted_schema": []}
    before = target.calls["traffic"]
    record = rollback.rollback(target, None, options(command="deployctl rollback bench"), QuietReporter())
    assert target.calls["traffic"] - before == 3
    assert record.revisions == first.revisions
    assert record.plan == [s for st in plan.to_dict()["stages"] for s in st["steps"]]


def _dead_run(target: LatencyTarget, revisions: dict[str, str], previous: ReleaseRecord) -> str:
    """A forced re-release of *previous*'s source, left 'running' by a holder that is gone (kill -9)."""
    record = runmod.new_record(target, "release", options(), "dead0000")
    record.revisions, record.previous = dict(revisions), dict(previous.revisions)
    record.fingerprint = previous.fingerprint
    target.ledger.save(record)
    return record.id


def test_a_half_shifted_switch_goes_back_to_what_served_fully(target: LatencyTarget) -> None:
    first = orchestrator.release(target, options(), QuietReporter())
    rid = _dead_run(target, {svc: f"{svc}-new" for svc in first.revisions}, first)
    target.set_traffic("svc0", [Split("svc0-new", 50), Split(first.revisions["svc0"], 50)])  # killed at 50 %
    target.set_traffic("svc1", [Split("svc1-new", 100)])  # svc1 had switched, svc2 had not started
    reporter = QuietReporter()
    with runmod.locked(target, options(), reporter):
        pass
    assert {svc: target.traffic(svc) for svc in first.revisions} == {
        svc: [Split(rev, 100)] for svc, rev in first.revisions.items()}
    settled = target.ledger.get(rid)
    assert settled is not None and settled.outcome == "interrupted"
    assert reporter.lines == [f"warning: release {rid} was interrupted during its traffic switch; traffic is back "
                              f"on {first.revisions['svc0']}, {first.revisions['svc1']}"]
    assert runmod.serving_release(target) == first  # what serves is the release before, again


def test_a_run_killed_after_its_switch_serves_and_is_not_released_again(target: LatencyTarget) -> None:
    first = orchestrator.release(target, options(), QuietReporter())
    new = {svc: f"{svc}-new" for svc in first.revisions}
    rid = _dead_run(target, new, first)
    for svc, rev in new.items():
        target.set_traffic(svc, [Split(rev, 100)])  # the switch finished; init was running when it died
    with runmod.locked(target, options(), QuietReporter()):
        pass
    settled = target.ledger.get(rid)
    assert settled is not None and settled.outcome == "succeeded"
    assert runmod.serving_release(target) == settled
    target._revisions.update({rev: svc for svc, rev in new.items()})  # the revisions exist and are healthy
    assert orchestrator.plan_release(target, options()).noop  # no second release of the same thing
