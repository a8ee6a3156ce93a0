"""The Python interpreters on this machine, by minor version: the local target builds an app's environment
with the one the app declares (deployctl.pyversion), as its image does.

Rule: found without downloading anything, in this order: deployctl's own interpreter when it is that version,
``pythonX.Y`` on PATH, pyenv's installed versions, then uv's (``uv python find``, which also sees the
interpreters ``uv python install`` put in place). Each candidate is run once to prove its version (a pyenv
shim for a version that is not selected exits non-zero); the answer is kept for the process.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"


def running() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@functools.cache
def find(minor: str) -> str | None:
    """The path of a working Python *minor* interpreter on this machine, or None."""
    for candidate in _candidates(minor):
        proven = _prove(candidate, minor)
        if proven:
            return proven
    return None


def _candidates(minor: str) -> Iterator[str]:
    if running() == minor:
        yield sys.executable
    on_path = shutil.which(f"python{minor}")
    if on_path:
        yield on_path
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if pyenv.is_dir():  # 3.12.1, 3.12.8: the newest patch first
        for version in sorted(pyenv.glob(f"{minor}.*"), key=lambda p: _numbers(p.name), reverse=True):
            yield str(version / "bin" / f"python{minor}")
    uv = _uv()
    if uv:
        out = _quiet([uv, "python", "find", "--system", minor])
        if out:
            yield out.splitlines()[0]


def _prove(path: str, minor: str) -> str | None:
    """The interpreter's real executable when *path* runs and is *minor*."""
    out = _quiet([path, "-c", _PROBE])
    lines = (out or "").splitlines()
    return lines[1] if len(lines) == 2 and lines[0] == minor else None


def _quiet(cmd: list[str]) -> str | None:
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    environ["UV_PYTHON_DOWNLOADS"] = "never"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False, env=environ,
                             cwd="/")
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))
