"""`deployctl secrets rotate local SECRET_KEY 2>&1 | head -1`: the reader goes away after one line, and the
rotation still runs every stage, switches traffic and records it (it was killed after its first stage)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.e2e.conftest import DEPLOYCTL, Project

pytestmark = pytest.mark.e2e


def test_a_rotation_whose_reader_went_away_finishes_and_records(project: Project) -> None:
    project.run("up", "local")
    before = project.serving()
    read, write = os.pipe()
    os.close(read)  # `| head -1` after its line: every write of the rotation meets a closed pipe
    try:
        out = subprocess.run([*DEPLOYCTL, "secrets", "rotate", "local", "SECRET_KEY"], cwd=project.root,
                             env=project.env, stdout=write, stderr=write, timeout=180, check=False)
    finally:
        os.close(write)
    assert out.returncode == 0
    record = project.ledger()[0]
    assert (record["kind"], record["outcome"]) == ("rotate", "succeeded")
    assert [s["name"] for s in record["stages"]][-1] == "promote"
    assert record["secret_versions"]["SECRET_KEY"] == "2"
    assert project.serving() not in (before, "")
    assert project.status()["lock"] is None
