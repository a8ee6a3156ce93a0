"""A reader that goes away (``deployctl … | head -1``) stops deployctl's output, never its work.

Rule: a write to a closed stdout or stderr neither raises nor exits. Python ignores SIGPIPE, so such a
write raises BrokenPipeError wherever it happens: in a progress line between two stages, in a library's
``print``, or in rich, whose own answer is ``SystemExit(1)``. Either one stopped a rotation after its first
stage. ``survive_closed_pipes`` wraps both streams once, at the entry point, so every command is covered;
a broken stream's descriptor is pointed at /dev/null, and then this write's leftovers, every later
write (this process's and its children's) and the interpreter's last flush all succeed.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class _Survivor:
    """A text stream that turns a closed pipe into /dev/null; anything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def survive_closed_pipes() -> None:
    """Wrap sys.stdout and sys.stderr (once) so that a closed pipe silences them instead of raising."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Survivor):
            setattr(sys, name, _Survivor(stream))
