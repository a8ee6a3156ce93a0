"""app/requirements.txt: exact pins, the versions these tests ran with, and a closed set (every
dependency of a pinned package is pinned too), with no test tools."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.app.support import ROOT

LINES = [ln.strip() for ln in (ROOT / "app" / "requirements.txt").read_text().splitlines()]
PINS = [Requirement(ln) for ln in LINES if ln and not ln.startswith("#")]
PINNED = {canonicalize_name(r.name): r for r in PINS}
# the image runs CPython 3.11 on Linux, whatever runs these tests
TARGET = {k: str(v) for k, v in default_environment().items()}
TARGET |= {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}


def test_every_line_is_an_exact_pin_of_the_installed_version() -> None:
    assert PINS and len(PINNED) == len(PINS)  # no duplicates
    for req in PINS:
        assert re.fullmatch(r"==\d[\w.]*", str(req.specifier)), req
        assert metadata.version(req.name) == str(req.specifier)[2:], req


def test_the_set_is_closed() -> None:
    for req in PINS:
        for extra in ("", *req.extras):
            for dep in map(Requirement, metadata.requires(req.name) or []):
                if dep.marker and not dep.marker.evaluate({**TARGET, "extra": extra}):
                    continue
                pin = PINNED.get(canonicalize_name(dep.name))
                assert pin, f"{req.name} needs {dep}, which is not pinned"
                assert dep.specifier.contains(str(pin.specifier)[2:]), f"{req.name} needs {dep}, pinned {pin}"


def test_the_service_needs_no_test_tools() -> None:
    assert not {"pytest", "httpx", "pgserver", "ruff", "mypy"} & set(PINNED)
