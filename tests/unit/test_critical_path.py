"""The critical path of a plan, and the latency target the benchmark measures it on (bench/bench_critical.py).

No test here times anything: the target's waits go to a recorder, and the smoke server records the delay it
answered each request after.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from bench.bench_critical import TYPICAL, critical_path, google_latency
from deployctl.pipeline import orchestrator
from deployctl.pipeline.orchestrator import ReleaseFacts
from deployctl.pipeline.plan import Plan, Stage, Step
from deployctl.pipeline.run import Options
from deployctl.pipeline.steps import Build, Deploy, PinSecrets, Promote
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server, step_latency
from tests.fakes.reporter import QuietReporter

DOC = Path(__file__).resolve().parents[2] / "docs" / "development.md"


def test_the_critical_path_is_the_longest_step_of_each_wave_in_order() -> None:
    builds = [Build("a", "ha"), Build("b", "hb"), Build("c", "hc")]
    pin, deploys = PinSecrets(()), [Deploy("a"), Deploy("b")]
    promotes = [Promote("a", (100,), "url-a"), Promote("b", (100,), "url-b")]
    seconds: dict[Step, float] = {builds[0]: 3, builds[1]: 5, builds[2]: 4, pin: 1, deploys[0]: 2, deploys[1]: 7,
                                  promotes[0]: 1.5, promotes[1]: 1.5}  # the promotes are equal: the first counts
    facts = ReleaseFacts({"a": "ha", "b": "hb", "c": "hc"}, {}, "fp", None, {})
    plan = Plan("s", "latency", facts, stages=[
        Stage("build", [builds, [pin]]),
        Stage("migrate", skip_reason="no migrate job configured"),
        Stage("deploy", [deploys]),
        Stage("promote", [promotes]),
    ])

    path = critical_path(plan, seconds.__getitem__)

    assert path.steps == ((builds[1], 5), (pin, 1), (deploys[1], 7), (promotes[0], 1.5))
    assert path.total_s == 14.5
    assert path.sequential_s == 3 + 5 + 4 + 1 + 2 + 7 + 1.5 + 1.5


# distinct values, so a latency injected for the wrong kind shows
LATENCY = Latency(build_s=1.0, job_s=2.0, deploy_s=3.0, smoke_s=0.001, job_start_s=5.0, traffic_s=6.0,
                  secrets_s=7.0, infra_s=8.0, retire_s=9.0)


def test_the_target_injects_the_configured_latency_of_each_operation(tmp_path: Path) -> None:
    waited: list[float] = []
    seen: list[tuple[str, float]] = []
    stack = make_stack(tmp_path, {"api": ["/health", "/startup"], "web": ["/"]}, rollout=[50, 100])
    with smoke_server(LATENCY.smoke_s, set(), seen) as url:
        target = LatencyTarget(stack, tmp_path / "state", url, latency=LATENCY, sleep=waited.append)
        options = Options(command="test", force=True, root=tmp_path)
        orchestrator.release(target, options, QuietReporter())  # the first: straight to 100 %, nothing to split
        target.log.clear()
        waited.clear()
        seen.clear()
        target._built.clear()  # the release measured builds every service
        plan = orchestrator.plan_release(target, options)
        orchestrator.release(target, options, QuietReporter())

    assert Counter(target.log) == Counter({
        ("build", 1.0): 2, ("secrets", 7.0): 1, ("infra", 8.0): 1,
        ("job_start", 5.0): 2, ("job", 2.0): 1,  # migrate is awaited, init (non-blocking) only started
        ("deploy", 3.0): 2, ("traffic", 6.0): 4,  # two services, 50 % then 100 %
        ("retire", 9.0): 2,
    })
    assert waited == [seconds for _, seconds in target.log]  # what was recorded is what was waited
    # smoke: 3 checks on the candidates, then each service's checks after each of its 2 traffic steps
    assert len(seen) == 3 + 2 * 3 and {delay for _, delay in seen} == {LATENCY.smoke_s}
    # the benchmark's model of each step adds up to exactly what the target injected
    modelled = sum(step_latency(step, target) for stage in plan.stages for step in stage.steps)
    assert modelled == pytest.approx(sum(waited) + sum(delay for _, delay in seen))


def test_the_documented_latency_table_is_the_benchmarks() -> None:
    rows = {line.split("|")[1].strip(" `"): float(line.split("|")[2]) for line in DOC.read_text().splitlines()
            if line.startswith("| `") and "_s` |" in line}
    assert rows == {t.field: t.seconds for t in TYPICAL}
    assert set(google_latency()) == {f.name for f in dataclasses.fields(Latency)}  # every kind has a figure
