"""Release fan-out benchmarks (issue budgets), as ratios measured within one run:

- `up local --force` of a stack with 3 services of the sample app <= 1.5 x the same with 1 service;
- a release against a target whose steps take fixed times (build 2 s, job 1 s, deploy 1 s, smoke 0.2 s):
  5 services <= 1.2 x 1 service.

The two sides of each ratio alternate, and each figure is the median of its runs.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import USER_ENV, Result, report

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _free_port(count: int) -> int:
    """A port with *count* free ports from it (the local target gives service i the port + i)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + count < 65535 and all(_free(port + i) for i in range(count)):
            return port


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _local_project(tmp: Path, services: int) -> Path:
    """A copy of the sample app and its local stack, with the api service repeated *services* times."""
    proj = tmp / f"proj{services}"
    shutil.copytree(ROOT / "app", proj / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "stacks").mkdir()
    from deployctl.config import effective
    from deployctl.configfiles import dump

    config = effective("local", ROOT)["config"]  # Pulumi.yaml's definition with the local overrides, as one file
    config["deployctl:local"]["port"] = _free_port(services)
    api = config["deployctl:services"]["api"]
    config["deployctl:services"] |= {f"api{i}": api for i in range(1, services)}
    checks = config["deployctl:smoke"]  # each copy checked as the api is
    config["deployctl:smoke"] = checks + [{**c, "service": f"api{i}"} for i in range(1, services) for c in checks]
    (proj / "stacks" / "Pulumi.local.yaml").write_text(dump({"config": config}))
    return proj


def _alternate(first: Callable[[], None], second: Callable[[], None], runs: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(runs):
        for samples, func in ((a, first), (b, second)):
            start = time.perf_counter()
            func()
            samples.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def local_fan_out(runs: int = 3) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        projects = {n: _local_project(Path(tmp), n) for n in (1, 3)}
        env = {k: v for k, v in USER_ENV.items() if k != "DEPLOYCTL_STATE_DIR"}  # state in each project

        def up(n: int) -> Callable[[], None]:
            return lambda: subprocess.run([PY, "-m", "deployctl", "up", "local", "--force"], cwd=projects[n],
                                          env=env, check=True, capture_output=True)

        try:
            for n in projects:
                up(n)()  # warm-up: Postgres, the dependency venv, the first release
            one, three = _alternate(up(1), up(3), runs)
        finally:
            for proj in projects.values():
                subprocess.run([PY, "-m", "deployctl", "down", "local", "--purge", "--yes"], cwd=proj, env=env,
                               capture_output=True, check=False)
    return Result("up local --force, 3 services vs 1", three, 1.5 * one, f"1.5 x 1 service ({one:.2f}s)")


def latency_fan_out(runs: int = 3) -> Result:
    from deployctl.pipeline import orchestrator
    from deployctl.pipeline.run import Options
    from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
    from tests.fakes.reporter import QuietReporter

    latency = Latency()  # build 2 s, job 1 s, deploy 1 s, smoke 0.2 s
    with tempfile.TemporaryDirectory() as tmp, smoke_server(latency.smoke_s, set()) as url:
        targets = {}
        for n in (1, 5):
            root = Path(tmp) / f"s{n}"
            targets[n] = LatencyTarget(make_stack(root, n), root / "state", url, latency=latency)

        def up(n: int) -> Callable[[], None]:
            def release() -> None:
                targets[n]._built.clear()  # every run builds
                orchestrator.release(targets[n], Options(command="bench", force=True), QuietReporter())
            return release

        one, five = _alternate(up(1), up(5), runs)
    return Result("release with fixed step latencies, 5 services vs 1", five, 1.2 * one,
                  f"1.2 x 1 service ({one:.2f}s)")


def run() -> bool:
    return report("release fan-out", [latency_fan_out(), local_fan_out()])


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
