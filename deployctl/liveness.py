"""Whether a process on this machine is still the one we recorded.

Rule: a process is named by its pid *and* its start time. A pid alone is not enough: the kernel reuses
pids, so a recorded pid may now belong to an unrelated process. A zombie counts as gone (it runs nothing);
a process we may not inspect (another user's) counts as alive, the answer that never breaks a live lock.
Used by both targets' deploy locks (is a holder on this host alive?) and by the local target (is a
revision's process alive?). It imports psutil, so it is not in the pipeline, which sees it through the
``Liveness`` protocol of deployctl.pipeline.lock; and both targets use it, so it is in neither.
"""

from __future__ import annotations

import os

import psutil

# psutil derives create_time from boot time plus clock ticks; two reads of one process can differ slightly
_SAME_START_S = 1.0


def alive(pid: int | None, started: float | None) -> bool:
    """Whether *pid* runs and was started at *started* (any start time when *started* is None)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < _SAME_START_S
    except psutil.AccessDenied:
        return True  # it exists but is not ours to inspect: assume it is the one, never take over from it
    except psutil.Error:  # NoSuchProcess, ZombieProcess
        return False


def start_time(pid: int | None = None) -> float:
    """The start time of *pid* (default: this process), as ``alive`` compares it."""
    return float(psutil.Process(pid if pid is not None else os.getpid()).create_time())
