"""Shared by the benchmarks: timing a command, and printing figures beside their budgets."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    seconds: float
    budget: float
    budget_text: str

    @property
    def ok(self) -> bool:
        return self.seconds <= self.budget


# Commands run as on a user's machine: Python keeps the bytecode it compiles (this build machine sets
# PYTHONDONTWRITEBYTECODE, which would make every run compile deployctl anew), in a cache of the bench's own.
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
USER_ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "deployctl-bench-pycache")


def timed(cmd: list[str], runs: int = 5, **kwargs: object) -> float:
    """Median wall time of *runs* executions of *cmd* (each must succeed), after one untimed run."""
    kwargs.setdefault("env", USER_ENV)
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def timed_pair(first: list[str], second: list[str], runs: int = 15, **kwargs: object) -> tuple[float, float]:
    """Median wall times of *first* and *second*, their runs interleaved (after one untimed run of each): a
    machine whose speed drifts during the measurement slows both alike, so their ratio stays honest."""
    kwargs.setdefault("env", USER_ENV)
    samples: tuple[list[float], list[float]] = ([], [])
    for cmd in (first, second):
        subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    for _ in range(runs):
        for cmd, into in zip((first, second), samples, strict=True):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
            into.append(time.perf_counter() - start)
    return statistics.median(samples[0]), statistics.median(samples[1])


def timed_call(func: Callable[[], object], runs: int = 3) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def report(title: str, results: list[Result]) -> bool:
    print(f"\n{title}")
    print(f"  {'benchmark':<44} {'measured':>10}   budget")
    for r in results:
        mark = "ok" if r.ok else "OVER BUDGET"
        print(f"  {r.name:<44} {r.seconds:>9.3f}s   {r.budget_text} ({r.budget:.3f}s)  {mark}")
    return all(r.ok for r in results)
