"""SIGINT and SIGTERM stop a command as KeyboardInterrupt, except inside ``held()``.

A process deployctl starts must be written down (an execution record, a revision, a router's state file)
before an interruption can unwind past it; otherwise the signal lands between the fork and the record and
leaves a process nobody will stop. ``held()`` keeps such a signal until the block ends and raises it there,
where the caller's ``except KeyboardInterrupt`` knows the process. Python runs signal handlers in the main
thread only, so the count needs no lock.
"""

from __future__ import annotations

import signal
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
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            _pending = None
            raise KeyboardInterrupt
