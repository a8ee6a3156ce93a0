"""Something expensive a test run makes once for all its processes (xdist workers), such as a venv.

A module- or session-scoped fixture is made once per worker that runs one of its tests: with six workers
and work stealing, a module's five tests can make the same venv five times. ``made_once(name, make)`` makes
``<run>/shared/<name>`` with *make* once per test run (tests/conftest.py's run directory, so nothing carries
over from an earlier run): the first process to ask makes it under a file lock while the others wait, then
all of them read it. If *make* fails, the next process to ask tries again (and fails the same way).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def made_once(name: str, make: Callable[[Path], None]) -> Path:
    shared = Path(os.environ["DEPLOYCTL_TEST_RUN"]) / "shared"
    shared.mkdir(exist_ok=True)
    path, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # what a failed attempt left
            path.mkdir()
            make(path)
            done.touch()
    return path
