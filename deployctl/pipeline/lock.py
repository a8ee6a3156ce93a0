"""The deploy lock for stacks whose state lives on this machine.

Rule: one holder per stack. The holder's details (id, pid, host, command, since) sit in ``lock.json``; a
short ``flock`` on ``lock.mutex`` makes check-and-take atomic between processes. A holder whose process is
gone (same host, pid not running or started at another time) is provably dead and is taken over with a
warning; a live holder makes the caller wait up to its timeout, then fail naming the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from deployctl.errors import DeployctlError, LockedError
from deployctl.pipeline.fs import atomic_write
from deployctl.pipeline.liveness import alive, start_time
from deployctl.pipeline.model import LockInfo


class FileLock:
    def __init__(self, directory: Path, stack: str, warn: Callable[[str], None] | None = None) -> None:
        self.path = directory / "lock.json"
        self.mutex = directory / "lock.mutex"
        self.stack = stack
        self.warn = warn or (lambda msg: print(f"Warning: {msg}", file=sys.stderr))
        directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        with open(self.mutex, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def holder(self) -> LockInfo | None:
        try:
            return LockInfo(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # a torn or foreign file: treat as no valid holder
            return None

    def is_stale(self, info: LockInfo) -> bool:
        if info.host != socket.gethostname():
            return False  # cannot tell from here; `deployctl unlock --force` decides
        return not alive(info.pid, info.pid_started)

    def acquire(self, command: str, timeout_s: float) -> LockInfo:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._mutex():
                current = self.holder()
                if current is not None and self.is_stale(current):
                    self.warn(f"recovered a stale deploy lock: {current.describe()} is no longer running")
                    current = None
                if current is None:
                    mine = _new_info(command)
                    atomic_write(self.path, json.dumps(asdict(mine)))
                    return mine
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"stack {self.stack!r} is locked: {current.describe()} since {_ago(current.since)}",
                    f"Wait for it to finish (--lock-timeout SECONDS), or if it is stuck: "
                    f"deployctl unlock {self.stack} --force {current.id}",
                )
            time.sleep(0.2)

    def release(self, info: LockInfo) -> None:
        with self._mutex():
            current = self.holder()
            if current is not None and current.id == info.id:
                self.path.unlink(missing_ok=True)

    def force_release(self, lock_id: str) -> LockInfo:
        with self._mutex():
            current = self.holder()
            if current is None:
                raise DeployctlError(f"stack {self.stack!r} is not locked", "Nothing to unlock.")
            if current.id != lock_id:
                raise DeployctlError(
                    f"stack {self.stack!r} is held by lock {current.id}, not {lock_id}",
                    f"Check `deployctl status {self.stack}`; pass the id it shows to --force.",
                )
            self.path.unlink(missing_ok=True)
            return current


def _new_info(command: str) -> LockInfo:
    now = time.time()
    pid = os.getpid()
    return LockInfo(
        id=uuid.uuid4().hex[:8],
        pid=pid,
        host=socket.gethostname(),
        command=command,
        since=now,
        heartbeat=now,
        pid_started=start_time(pid),
    )


def _ago(since: float) -> str:
    seconds = int(time.time() - since)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"
