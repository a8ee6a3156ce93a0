"""What serves is checked, not assumed (issue 17): traffic never goes back onto a revision that does not
answer, a candidate never splits traffic with one, failed candidates are stopped, and a no-change release
over a dead revision replaces it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator
from deployctl.pipeline.model import ReleaseRecord, Split
from deployctl.pipeline.run import Options
from deployctl.pipeline.status import stack_status
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter

FAST = Latency(build_s=0.0, job_s=0.0, deploy_s=0.0, smoke_s=0.0)


@pytest.fixture
def fail_smoke() -> set[str]:
    return set()


@pytest.fixture
def target(tmp_path: Path, fail_smoke: set[str]) -> Iterator[LatencyTarget]:
    with smoke_server(0.0, fail_smoke) as url:
        yield LatencyTarget(make_stack(tmp_path, 2, rollout=[50, 100]), tmp_path / "state", url, latency=FAST)


def release(target: LatencyTarget, force: bool = True) -> ReleaseRecord:
    return orchestrator.release(target, Options(command="deployctl up bench", force=force), QuietReporter())


def test_a_failed_switch_routes_back_to_the_newest_revision_that_answers_and_stops_its_candidates(
    target: LatencyTarget, fail_smoke: set[str]
) -> None:
    r1, r2 = release(target), release(target)
    target.dead |= set(r2.revisions.values())  # what serves died after it was promoted
    fail_smoke.add("svc1")  # the next candidate passes its own checks, then fails behind the service URL
    with pytest.raises(StageFailed) as failed:
        release(target)
    assert failed.value.stage == "promote" and failed.value.rolled_back
    assert {svc: target.traffic(svc) for svc in r1.revisions} == {
        svc: [Split(rev, 100)] for svc, rev in r1.revisions.items()}  # not r2's corpses
    assert sorted(target.discarded) == ["svc0-r0003", "svc1-r0003"]  # no failed candidate is left ready


def test_a_candidate_never_splits_traffic_with_a_dead_revision(target: LatencyTarget) -> None:
    r1 = release(target)
    target.dead.add(r1.revisions["svc0"])
    plan = orchestrator.plan_release(target, Options(force=True))
    promote = plan.stage("promote")
    assert promote is not None
    assert [step.describe().split(" at ")[0] for step in promote.waves[0]] == [
        "shift svc0 traffic 100%", "shift svc1 traffic 50% → 100%"]  # svc1's previous revision answers


def test_a_no_change_release_over_a_dead_revision_replaces_it(target: LatencyTarget) -> None:
    r1 = release(target)
    assert orchestrator.plan_release(target, Options()).noop
    dead = r1.revisions["svc1"]
    target.dead.add(dead)
    assert stack_status(target)["health"]["services"]["svc1"]["revision_alive"] is False
    plan = orchestrator.plan_release(target, Options())
    assert plan.kind == "heal" and not plan.noop
    assert plan.warnings == [f"revision {dead} of svc1 does not answer"]
    assert [(stage, line.split(" at ")[0]) for stage, line in plan.lines() if stage != "build"] == [
        ("deploy", "start a candidate revision of svc1 with no traffic"),
        ("smoke", "check /health on the candidate"),
        ("promote", "shift svc1 traffic 100%"),
        ("promote", "keep the newest 3 revisions of each service warm; stop the rest"),
    ]
    healed = release(target, force=False)
    assert healed.kind == "heal" and healed.outcome == "succeeded"
    assert healed.message == f"healed: replaced dead revision {dead} with svc1-{healed.id}"
    assert healed.revisions == {"svc0": r1.revisions["svc0"], "svc1": f"svc1-{healed.id}"}
    assert target.traffic("svc1") == [Split(f"svc1-{healed.id}", 100)]
    assert orchestrator.plan_release(target, Options()).noop  # healed: nothing to do any more
