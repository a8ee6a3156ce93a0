"""app/requirements.txt (exported from uv.lock; tests/test_lock.py keeps it current): exact pins with
hashes, the versions these tests ran with, and a closed set with no test tools."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.app.support import ROOT

TEXT = (ROOT / "app" / "requirements.txt").read_text()
# one requirement per logical line: continuation lines carry its hashes
LOGICAL = [ln.strip() for ln in TEXT.replace("\\\n", " ").splitlines() if ln.strip() and not ln.startswith(" ")]
ENTRIES = [ln for ln in LOGICAL if not ln.startswith("#")]
PINS = [Requirement(ln.split(" --hash")[0]) for ln in ENTRIES]
PINNED = {canonicalize_name(r.name): r for r in PINS}
# the image runs CPython 3.11 on Linux, whatever runs these tests
TARGET = {k: str(v) for k, v in default_environment().items()}
TARGET |= {"python_version": "3.11", "python_full_version": "3.11.11", "sys_platform": "linux",
           "platform_system": "Linux"}


def test_every_line_is_an_exact_pin_with_hashes_of_the_installed_version() -> None:
    assert PINS and len(PINNED) == len(PINS)  # no duplicates
    for entry, req in zip(ENTRIES, PINS, strict=True):
        assert re.fullmatch(r"==\d[\w.]*", str(req.specifier)), req
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), req
        assert req.marker is None or req.marker.evaluate(TARGET), req
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
