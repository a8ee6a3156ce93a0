"""The release's critical path, and how far a real release through the executor is from it.

A staging-like stack (three services, a blocking migrate job, a non-blocking init job, a 10 → 50 → 100 %
rollout) is released through the real orchestrator and executor against the latency target
(tests/fakes/latency.py), whose every operation sleeps the latency below for its kind. The critical path of
the release's plan (``critical_path`` below: the longest step of each wave) is the
shortest wall time the plan allows with a worker per step; the measured wall time of ``release()`` (lock,
planning, ledger and all) is compared with it.

Budget: measured / critical path ≤ 1.15. What a release adds beyond the injected latencies is fixed work:
the lock, planning and ledger writes, a thread pool per wave, and an HTTP client per round of smoke checks
(about 45 ms each here, most of the 0.4 s this stack adds). At the default scale the critical path is about
8 s, so a release whose waves all overlap stays near 1.06 even on a busy machine, while one that ran a
wave of promotions, deploys or builds one service at a time would add 21 %, 25 % or 75 % and go over. The
ratio at a scale below 1 overstates the real one: Google's latencies are compressed, the fixed work is not.

The latencies are in Google's time and are scaled by ``--scale`` (bench seconds per Google second). Google
documents none of them as a typical figure (docs/development.md, "The release's critical path", has the
sources looked at); each is an assumption, named as such, and configurable:

    .venv/bin/python -m bench.bench_critical --scale 0.05 --set build_s=90 --set deploy_s=30
    DEPLOYCTL_BENCH_SCALE=0.05 DEPLOYCTL_BENCH_LATENCY=build_s=90,deploy_s=30 .venv/bin/python -m bench.run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import Result, report

if TYPE_CHECKING:
    from deployctl.pipeline.plan import Plan, Step

SCALE = 0.05  # bench seconds per second of Google's time
RUNS = 3
BUDGET = 1.15
SERVICES = {"api": ["/health", "/startup", "/docs", "/"], "web": ["/health", "/"], "admin": ["/health"]}
ROLLOUT = [10, 50, 100]


@dataclass(frozen=True)
class Typical:
    """One operation's latency in Google's time, what it covers and where the figure comes from."""

    field: str  # the tests.fakes.latency.Latency field it sets
    seconds: float
    what: str
    source: str


# field | Google seconds | what it covers | the source: Google documents no typical figure for any of these, so
# each is an assumption; the parenthesis says what Google does document nearby
_TABLE = """
build_s     | 60  | Cloud Build: queue, build of a small Python image on cached layers, push | assumption (Cloud Build, 'Speeding up builds' and the build statuses: no duration)
secrets_s   | 0.6 | Secret Manager: pin 3 secrets, 2 API calls each | assumption: 0.1 s per API call
infra_s     | 30  | pulumi up with the release's images (services and jobs updated) | assumption (Pulumi documents none either)
job_start_s | 10  | Cloud Run job execution: request to the task's container running | assumption (Cloud Run jobs document the task timeout, 10 min by default, not a start time)
job_s       | 10  | the migrate task (alembic upgrade, small schema) until reported done | assumption: depends on the migrations
deploy_s    | 20  | Cloud Run: revision created, started, startup probe passed, tagged | assumption (Cloud Run documents the startup probe's limit, 240 s, not a typical time)
smoke_s     | 0.2 | one HTTPS request to a ready Cloud Run instance | assumption: an in-region round trip and a small handler
traffic_s   | 5   | Cloud Run services.update of a traffic split, until routed and verified | assumption ('Rollbacks, gradual rollouts, and traffic migration': routing is 'not instantaneous', no figure)
retire_s    | 0.1 | read one service's traffic and tags (nothing to drop on a repeat release) | assumption: 0.1 s per API call
"""  # noqa: E501 - one row per line
TYPICAL = tuple(
    Typical(field, float(seconds), what, source)
    for field, seconds, what, source in (
        [cell.strip() for cell in line.split(" | ")] for line in _TABLE.strip().splitlines()
    )
)
NOT_ON_THE_PATH = ("IAM propagation (IAM, 'Access change propagation': typically 2 minutes, potentially 7): "
                   "a repeat release grants nothing, so no call waits for it")


def google_latency(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Each operation kind's latency in Google's time: the table above, then *overrides*."""
    values = {t.field: t.seconds for t in TYPICAL}
    for name, seconds in (overrides or {}).items():
        if name not in values:
            raise SystemExit(f"unknown latency {name!r}; one of {', '.join(values)}")
        values[name] = seconds
    return values


def parse_overrides(text: str) -> dict[str, float]:
    """``build_s=90,deploy_s=30`` → {"build_s": 90.0, "deploy_s": 30.0}."""
    pairs = [item.split("=", 1) for item in text.replace(" ", "").split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"latency overrides are name=seconds pairs separated by commas, got {text!r}")
    return {name: float(seconds) for name, seconds in pairs}


@dataclass(frozen=True)
class CriticalPath:
    """The steps a plan's wall time is made of: the longest step of each wave, in execution order.

    ``total_s`` is the plan's shortest wall time with as many workers as a wave has steps (the executor
    overlaps nothing across waves); ``sequential_s`` is every step one after another, for contrast."""

    steps: tuple[tuple[Step, float], ...]
    total_s: float
    sequential_s: float


def critical_path(plan: Plan, duration: Callable[[Step], float]) -> CriticalPath:
    """The longest chain of steps that must run one after another in *plan*, when each step takes
    ``duration(step)`` seconds. A wave waits for every step of the wave before it, so the chain holds one
    step per wave, its longest (the first of equals); skipped stages add nothing."""
    path: list[tuple[Step, float]] = []
    sequential = 0.0
    for stage in plan.stages:
        for wave in stage.waves:
            timed = [(step, duration(step)) for step in wave]
            if timed:
                path.append(max(timed, key=lambda pair: pair[1]))
                sequential += sum(seconds for _, seconds in timed)
    return CriticalPath(tuple(path), sum(seconds for _, seconds in path), sequential)


@dataclass
class Figures:
    path: list[tuple[str, str, float]]  # (stage, step, Google seconds) of each critical-path step
    critical_s: float  # bench seconds
    sequential_s: float
    injected_s: float  # what the target and the smoke server injected in one release: the model's check
    measured_s: float  # median wall time of release()
    in_stages_s: float  # of it, inside the executor's stages (the rest: lock, planning, ledger record)


def measure(latency: dict[str, float], scale: float, runs: int) -> Figures:
    from deployctl.pipeline import orchestrator
    from deployctl.pipeline.run import Options
    from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server, step_latency
    from tests.fakes.reporter import QuietReporter

    scaled = Latency(**{name: seconds * scale for name, seconds in latency.items()})
    seen: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, smoke_server(scaled.smoke_s, set(), seen) as url:
        root = Path(tmp)
        target = LatencyTarget(make_stack(root, SERVICES, ROLLOUT), root / "state", url, latency=scaled)
        options = Options(command="bench", force=True, root=root)
        target.latency = Latency(0, 0, 0, 0)  # the first release, untimed: nothing to split traffic against
        orchestrator.release(target, options, QuietReporter())
        target.latency = scaled
        target._built.clear()
        plan = orchestrator.plan_release(target, options)
        path = critical_path(plan, lambda step: step_latency(step, target))
        samples, in_stages = [], []
        for _ in range(runs):
            target._built.clear()  # every release builds
            target.log.clear()
            seen.clear()
            start = time.perf_counter()
            record = orchestrator.release(target, options, QuietReporter())
            samples.append(time.perf_counter() - start)
            in_stages.append(sum(stage.elapsed_s for stage in record.stages))
        injected = sum(seconds for _, seconds in target.log) + sum(delay for _, delay in seen)
    return Figures(
        path=[(step.stage, f"{type(step).__name__}: {step.describe()}", seconds / scale)
              for step, seconds in path.steps],
        critical_s=path.total_s,
        sequential_s=path.sequential_s,
        injected_s=injected,
        measured_s=statistics.median(samples),
        in_stages_s=statistics.median(in_stages),
    )


def run(scale: float | None = None, overrides: dict[str, float] | None = None, runs: int = RUNS) -> bool:
    scale = scale if scale is not None else float(os.environ.get("DEPLOYCTL_BENCH_SCALE", SCALE))
    if overrides is None:
        overrides = parse_overrides(os.environ.get("DEPLOYCTL_BENCH_LATENCY", ""))
    latency = google_latency(overrides)
    f = measure(latency, scale, runs)
    print(f"\nrelease critical path: {', '.join(SERVICES)}; migrate + init jobs; rollout "
          f"{' → '.join(map(str, ROLLOUT))} %  (Google seconds; the bench runs {scale:g} s per Google second)")
    print(f"  {'latency':<12} {'Google s':>8}   what, and where the figure comes from")
    for t in TYPICAL:
        mark = "  (set)" if t.field in overrides else ""
        print(f"  {t.field:<12} {latency[t.field]:>8.1f}   {t.what}{mark}\n  {'':<24}{t.source}")
    print(f"  not injected: {NOT_ON_THE_PATH}")
    print(f"  {'stage':<8} {'critical-path step':<72} {'Google s':>8}")
    for stage, step, seconds in f.path:
        print(f"  {stage:<8} {step[:72]:<72} {seconds:>8.1f}")
    ratio = f.measured_s / f.critical_s
    print(f"  critical path {f.critical_s / scale:.1f} s; every step one after another {f.sequential_s / scale:.1f} s")
    print(f"  measured release (median of {runs}) {f.measured_s:.3f}s = {f.measured_s / scale:.1f} Google s: "
          f"{f.measured_s - f.critical_s:.3f}s over the critical path, {f.in_stages_s - f.critical_s:.3f}s of it "
          f"in the stages, {f.measured_s - f.in_stages_s:.3f}s outside (lock, planning, ledger)")
    print(f"  measured / critical path = {ratio:.3f} (budget {BUDGET})")
    model_ok = abs(f.injected_s - f.sequential_s) <= 1e-6 * max(1.0, f.sequential_s)
    if not model_ok:
        print(f"  MODEL MISMATCH: the target injected {f.injected_s:.4f}s per release, "
              f"the step model adds up to {f.sequential_s:.4f}s")
    return report("release critical path (latency target)", [
        Result("release vs its critical path", f.measured_s, BUDGET * f.critical_s,
               f"{BUDGET} x critical path ({f.critical_s:.3f}s)"),
    ]) and model_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_critical", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=None,
                        help=f"bench seconds per Google second (default $DEPLOYCTL_BENCH_SCALE or {SCALE})")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=SECONDS",
                        help="a latency in Google seconds, e.g. build_s=90 (repeatable; default "
                             "$DEPLOYCTL_BENCH_LATENCY)")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"timed releases; the median counts ({RUNS})")
    args = parser.parse_args(argv)
    overrides = parse_overrides(",".join(args.set)) if args.set else None
    return 0 if run(args.scale, overrides, args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())

