"""SIGINT and SIGTERM stop a command as KeyboardInterrupt, except inside ``held()``.

A process deployctl starts must be written down (an execution record, a revision, a router's state file)
before an interruption can unwind past it; otherwise the signal lands between the fork and the record and
leaves a process nobody will stop. Cleanup after an interruption (stopping that process, recording it) must
not itself be cut short by a second Ctrl-C. ``held()`` keeps such a signal until the block ends and raises
it there, once, where the caller's ``except KeyboardInterrupt`` knows the process.

Python runs signal handlers in the main thread only, and only the main thread is interrupted, so ``held()``
acts in the main thread alone (the count is the main thread's: no lock). A worker thread is never
interrupted by a signal, so its blocks need no holding: the main thread, interrupted while it waits for
the workers, lets them finish and then runs the stage's undo (pipeline/executor.py).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_held = 0
_pending: int | None = None


def handler(signum: int, frame: object) -> None:
    global _pending
    if _held:
        _pending = signum
        return
    raise KeyboardInterrupt


def install() -> None:
    """A SIGTERM stops a command the way Ctrl-C does; a SIGINT the shell told us to ignore stays ignored."""
    signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)


@contextmanager
def held() -> Iterator[None]:
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # signals interrupt the main thread only
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            _pending = None
            raise KeyboardInterrupt
