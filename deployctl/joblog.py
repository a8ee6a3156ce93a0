"""What a job's (or any process's) output says about why it failed: one line to quote in an error, with the
secret values the process was given taken out (deployctl.errors: secret values never go into a message).

Used by every target: the local one reads a process's log file, the gcp one a Cloud Run execution's entries
in Cloud Logging (``deployctl.targets.gcp.run_logs``). Text only, standard library only, so either may import it
without the other's dependencies.
"""

from __future__ import annotations

import re

_EXPLAINS = re.compile(r"Error|error:|ERROR:|Exception")
_TRACEBACK = "Traceback (most recent call last):"
LINE_MAX = 300  # the longest line quoted


def explain(output: str, strict: bool = False) -> str:
    """The line of a process's output that says why it failed, not merely its last line (often a docs URL).

    The final exception line of the last Python traceback (``sqlalchemy.exc.OperationalError: …``), else
    the last line that names an error, else the last line; *strict*: else "" (a line that merely came last,
    ``INFO Running upgrade …``, does not say why). The line is cut to ``LINE_MAX`` characters, so a secret
    value it holds may be cut too and no longer match: take secret values out of the whole output before
    (``quote``), never out of what this returns."""
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith(_TRACEBACK)]
    if starts:
        raised = _raised(lines[starts[-1] + 1 :])
        if raised is not None:
            return raised[:LINE_MAX]
    named = [ln.strip() for ln in lines if _EXPLAINS.search(ln)]
    if named:
        return named[-1][:LINE_MAX]
    return lines[-1].strip()[:240] if lines and not strict else ""


def quote(output: str, values: list[str], strict: bool = False) -> str:
    """The line of *output* that explains it (``explain``), without *values* (secret values, longest first).

    The whole output is redacted before the line is picked and cut: a value that straddles the cut would no
    longer match once cut, and its beginning would stay in the message."""
    return explain(redact(output, values), strict)


def cut_short(output: str) -> bool:
    """Whether *output* ends inside a Python traceback: it names no exception yet (more output may follow)."""
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith(_TRACEBACK)]
    return bool(starts) and _raised(lines[starts[-1] + 1 :]) is None


def redact(text: str, values: list[str]) -> str:
    """*text* with each of *values* (secret values, longest first) replaced by ``****``."""
    for value in values:
        text = text.replace(value, "****")
    return text


def _raised(frames: list[str]) -> str | None:
    # the frames are indented; the first line after them that is not is the exception and its message
    return next((ln for ln in frames if not ln.startswith((" ", "\t"))), None)
