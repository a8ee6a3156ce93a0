"""The Python version an app declares: one reading, shared by ``deployctl init`` (the image it writes) and the
local target (the interpreter it builds the app's environment with), so that both run the same Python.

Rule: a pin wins over a range. Pins are ``.python-version`` (pyenv, uv) and ``runtime.txt`` (``python-3.12.1``,
Heroku's and Cloud Foundry's form), looked for from the app's directory up, nearest first; then
``requires-python`` of a ``pyproject.toml`` in the same directories. A range picks DEFAULT if it allows it,
else the newest version an image can be built on. A pin of a version no image exists for is not a pin.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet

# Python minors an image can be built on, newest first, each with the exact base image tag it uses.
PYTHONS = {"3.13": "3.13.1", "3.12": "3.12.8", "3.11": "3.11.11", "3.10": "3.10.16"}
DEFAULT = "3.12"
_PIN = re.compile(r"(?<![\d.])(3)\.(\d+)")
_PINS = (".python-version", "runtime.txt")


@dataclass(frozen=True)
class Declared:
    """The version to build with (``minor``), where it comes from, and every version the app accepts
    (``allowed``, ``minor`` first: one for a pin, each fitting one for a range)."""

    minor: str
    source: str
    allowed: tuple[str, ...]


def declared(read: Callable[[str], str | None], directories: Sequence[str]) -> Declared | None:
    """What the app in ``directories[0]`` declares (see the module's rule); None when nothing does.

    *read* returns a file's text (None when there is none), given its path relative to the repository root;
    *directories* are relative too ("." is the root), nearest first."""
    for directory in directories:
        for name in _PINS:
            path = _join(directory, name)
            minor = _pinned(read(path) or "")
            if minor in PYTHONS:
                return Declared(minor, path, (minor,))
    for directory in directories:
        spec = _requires(read(_join(directory, "pyproject.toml")))
        if spec is None:
            continue
        try:
            allowed = SpecifierSet(spec)
        except InvalidSpecifier:
            continue
        fits = [m for m in PYTHONS if allowed.contains(PYTHONS[m])]
        if fits:
            best = DEFAULT if DEFAULT in fits else fits[0]
            return Declared(best, f"requires-python {spec}", (best, *(m for m in fits if m != best)))
    return None


def _pinned(text: str) -> str | None:
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = _PIN.search(line)
            return f"{match.group(1)}.{match.group(2)}" if match else None
    return None


def _requires(text: str | None) -> str | None:
    if not text or "requires-python" not in text:
        return None
    try:
        spec = tomllib.loads(text).get("project", {}).get("requires-python")
    except tomllib.TOMLDecodeError:
        return None
    return spec if isinstance(spec, str) else None


def _join(directory: str, name: str) -> str:
    return name if directory in (".", "") else f"{directory}/{name}"
