"""Install extras by target: ``deployctl[local]`` and ``deployctl[gcp]``.

Rule: what each extra contains is written once, in pyproject.toml; this module reads it back from
deployctl's installed metadata, so a target that is opened without its extra fails before any change with
one line naming the extra to install, never with an ImportError deep inside a release.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement

from deployctl.errors import PreconditionError


def missing(extra: str) -> list[str]:
    """The distributions of *extra* that are not installed (or are at a version it does not allow)."""
    absent = []
    for line in metadata.requires("deployctl") or []:
        req = Requirement(line)
        if not (req.marker and req.marker.evaluate({"extra": extra})) or req.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            absent.append(req.name)
            continue
        if not req.specifier.contains(installed, prereleases=True):
            absent.append(f"{req.name} (found {installed}, needs {req.specifier})")
    return absent


def require(extra: str, what: str) -> None:
    """Raise a one-line PreconditionError unless deployctl[*extra*] is installed."""
    absent = missing(extra)
    if absent:
        raise PreconditionError(
            f"{what} needs the deployctl[{extra}] extra, which is not installed (missing: {', '.join(absent)})",
            f"Install it: pip install 'deployctl[{extra}]'  "
            f"(in this repository: scripts/install --inexact --extra {extra}, which keeps the other extras)",
        )
