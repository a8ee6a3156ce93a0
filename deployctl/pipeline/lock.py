"""A stack's deploy lock: one model (``StoredLock``) over a store per target.

Rule: one holder per stack. The holder's details (``LockInfo``: id, pid, host, command, since, heartbeat,
the process's start time) are one JSON document; every change to it is a compare-and-set against the
version last read, so of two processes that race for the lock exactly one wins and nobody overwrites a
holder they did not read. The policy is written here once; a store only reads and compare-and-sets, and
lives beside the target it serves, so this module imports no storage library:

- ``FileLockStore`` (local stacks, deployctl/targets/local/state.py): ``lock.json`` in the stack's state
  directory, replaced atomically; a short ``flock`` on ``lock.mutex`` makes each compare-and-set atomic
  between processes.
- ``GcsLockStore`` (gcp stacks, deployctl/targets/gcp/state.py): the ``lock.json`` object, with generation
  preconditions.

A holder is stale when it runs on this host and its process is gone or is another process now (pid and start
time, through the ``Liveness`` each target's lock passes in: deployctl/liveness.py), or, for a lock that
heartbeats, when its last heartbeat is older than ``stale_after_s``. A stale holder is taken over with a
warning; a live one makes the caller wait up to its timeout, then fail naming the holder and the ``deployctl
unlock STACK --force ID`` that breaks it. A holder on another host that does not heartbeat is never judged
from here: a person decides.

A holder checks before each step that the lock on the store is still its own (``check``): a lock deleted
or broken under it (by hand, by ``unlock --force``) is noticed there, and the holder stops with LockLost
instead of working on beside the command that took the lock next. The heartbeat, where there is one,
notices the same loss between steps.

Heartbeat: the GCS lock heartbeats (its holders run on laptops and on Cloud Build, where no process check
reaches, and a long release must not look stale). The local lock does not: its holders are processes on
this machine, whose liveness the pid and start time tell exactly, so a heartbeat would cost a thread and a
write per period and could only add a wrong answer (a live holder suspended by Ctrl-Z or a sleeping laptop
would look stale and be taken over in the middle of its release).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from typing import Any, Generic, Protocol, TypeVar

from deployctl.errors import DeployctlError, LockedError, LockLost
from deployctl.pipeline.model import LockInfo

V = TypeVar("V")


class LockStore(Protocol[V]):
    """One JSON document with a version the policy reads and compares but never interprets."""

    def read(self) -> tuple[dict[str, Any] | None, V]:
        """The document (None when there is none, or it is unreadable) and its version."""
        ...

    def write(self, data: dict[str, Any], expected: V) -> V | None:
        """Replace the document if its version is still *expected*; the new version, or None if it changed."""
        ...

    def delete(self, expected: V) -> bool:
        """Delete the document if its version is still *expected*; False if it changed."""
        ...


class Liveness(Protocol):
    """Processes on this host, named by pid and start time (deployctl/liveness.py is the one there is)."""

    def alive(self, pid: int | None, started: float | None) -> bool:
        """Whether *pid* runs and was started at *started*."""
        ...

    def start_time(self) -> float:
        """This process's start time, as ``alive`` compares it."""
        ...


class StoredLock(Generic[V]):
    """The deploy lock's policy (see the module docstring), over any ``LockStore``."""

    def __init__(
        self,
        store: LockStore[V],
        stack: str,
        *,
        liveness: Liveness,
        heartbeat_s: float | None = None,
        stale_after_s: float | None = None,
        poll_s: float = 0.2,
        warn: Callable[[str], None] | None = None,
        working: Callable[[LockInfo], list[str]] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.liveness = liveness
        # what a holder started that still runs (a job); a holder whose process died keeps the lock until then
        self.working = working or (lambda info: [])
        self.stack = stack
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.warn = warn or (lambda msg: print(f"Warning: {msg}", file=sys.stderr))
        self.say = say or (lambda msg: print(msg, file=sys.stderr))  # progress: why a command is waiting
        self._beat: tuple[threading.Event, threading.Thread] | None = None
        self._version: V | None = None  # of the document we last wrote, for the heartbeat
        self._lost = threading.Event()  # the heartbeat found the lock was no longer ours

    # -- read-only --------------------------------------------------------------------------------
    def holder(self) -> LockInfo | None:
        return _parse(self.store.read()[0])

    def is_stale(self, info: LockInfo) -> bool:
        return self._stale(info) is not None

    def _stale(self, info: LockInfo) -> str | None:
        """Why the holder is known dead, or None when it (or work it started) may be alive."""
        if info.host == socket.gethostname() and not self.liveness.alive(info.pid, info.pid_started):
            return None if self.working(info) else "is no longer running"
        if self.stale_after_s is not None and time.time() - info.heartbeat > self.stale_after_s:
            return f"sent its last heartbeat {_ago(info.heartbeat)}"
        return None

    def check(self, lock_id: str) -> None:
        """Raise LockLost unless the lock on the store is still *lock_id* (read each time: a file deleted
        by hand sends no signal)."""
        current = None if self._lost.is_set() else self.holder()
        if current is not None and current.id == lock_id:
            return
        now = f"; {current.describe()} holds it now" if current is not None else ""
        raise LockLost(
            f"lost the deploy lock of {self.stack!r} (it was deleted or broken){now}",
            f"Nothing more was changed. Check `deployctl status {self.stack}`, then run the command again.",
        )

    # -- mutating ---------------------------------------------------------------------------------
    def acquire(self, command: str, timeout_s: float) -> LockInfo:
        deadline = time.monotonic() + timeout_s
        waiting = False
        while True:
            data, version = self.store.read()
            current = _parse(data)
            stale = None if current is None else self._stale(current)
            if current is None or stale is not None:
                mine = self._take(command, version)
                if mine is None:
                    continue  # it changed between our read and our write: look again
                if current is not None:
                    self.warn(f"recovered a stale deploy lock: {current.describe()} {stale}")
                return mine
            if time.monotonic() >= deadline:
                raise self._locked(current)
            if not waiting and timeout_s >= 1:  # said once, so a command that waits is not a silent one
                waiting = True
                self.say(f"Waiting up to {timeout_s:g}s for the deploy lock of {self.stack!r}: {current.describe()}")
            time.sleep(max(0.01, min(self.poll_s, deadline - time.monotonic())))

    def release(self, info: LockInfo) -> None:
        """Give the lock up if it is still ours (someone may have broken it meanwhile)."""
        self._stop_heartbeat()
        data, version = self.store.read()
        current = _parse(data)
        if current is not None and current.id == info.id:
            self.store.delete(version)

    def force_release(self, lock_id: str) -> LockInfo:
        data, version = self.store.read()
        current = _parse(data)
        if current is None:
            raise DeployctlError(f"stack {self.stack!r} is not locked", "Nothing to unlock.")
        if current.id != lock_id:
            raise DeployctlError(
                f"stack {self.stack!r} is held by lock {current.id}, not {lock_id}",
                f"Check `deployctl status {self.stack}`; pass the id it shows to --force.",
            )
        if not self.store.delete(version):
            raise DeployctlError(f"the lock of {self.stack!r} changed while breaking it", "Look again and retry.")
        return current

    def heartbeat(self, info: LockInfo) -> bool:
        """Refresh the holder's heartbeat; False when the lock is no longer ours."""
        beat = replace(info, heartbeat=time.time())
        version = None if self._version is None else self.store.write(asdict(beat), self._version)
        if version is None:
            return False
        self._version = version
        return True

    # -- internals --------------------------------------------------------------------------------
    def _take(self, command: str, expected: V) -> LockInfo | None:
        mine = _new_info(command, self.liveness.start_time())
        version = self.store.write(asdict(mine), expected)
        if version is None:
            return None
        self._version = version
        self._lost.clear()
        if self.heartbeat_s is not None:
            self._start_heartbeat(mine, self.heartbeat_s)
        return mine

    def _locked(self, holder: LockInfo) -> LockedError:
        beat = f", last heartbeat {_ago(holder.heartbeat)}" if self.heartbeat_s is not None else ""
        orphans = self.working(holder) if not self.liveness.alive(holder.pid, holder.pid_started) else []
        if orphans:  # the holder died; what it started did not
            beat += f"; the holder is gone but its job {', '.join(orphans)} still runs"
        return LockedError(
            f"stack {self.stack!r} is locked: {holder.describe()} since {_ago(holder.since)}{beat}",
            f"Wait for it to finish (--lock-timeout SECONDS), or if it is stuck: "
            f"deployctl unlock {self.stack} --force {holder.id}",
        )

    def _start_heartbeat(self, info: LockInfo, every_s: float) -> None:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    if not self.heartbeat(info):
                        self._lost.set()  # the holder stops at its next check
                        self.warn(f"lost the deploy lock of {self.stack!r} (someone broke it)")
                        return
                except DeployctlError as exc:
                    self.warn(f"could not refresh the deploy lock: {exc.message}")

        thread = threading.Thread(target=loop, name=f"deployctl-lock-{self.stack}", daemon=True)
        thread.start()
        self._beat = (stop, thread)

    def _stop_heartbeat(self) -> None:
        if self._beat is not None:
            stop, thread = self._beat
            stop.set()
            thread.join(timeout=5)
            self._beat = None


_FIELDS = {f.name for f in fields(LockInfo)}


def _parse(data: dict[str, Any] | None) -> LockInfo | None:
    if data is None:
        return None
    try:  # fields a newer deployctl may add are ignored, so it is never mistaken for no holder at all
        return LockInfo(**{k: v for k, v in data.items() if k in _FIELDS})
    except TypeError:  # a document that is not a holder's: no valid holder
        return None


def _new_info(command: str, started: float) -> LockInfo:
    now = time.time()
    return LockInfo(
        id=uuid.uuid4().hex[:8],
        pid=os.getpid(),
        host=socket.gethostname(),
        command=command,
        since=now,
        heartbeat=now,
        pid_started=started,
    )


def _ago(since: float) -> str:
    seconds = int(time.time() - since)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"
