"""The ledger's commit is the app repository's (the one holding the service source, which may not be the
one deployctl or the stacks live in) and says whether the work tree differed; older records still load."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deployctl.pipeline.model import decode_record
from deployctl.pipeline.run import app_commit


def _git(where: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=where,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(autouse=True)
def _no_cloud_build_sha(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMIT_SHA", raising=False)


def test_the_commit_of_the_repository_that_holds_the_source(tmp_path: Path) -> None:
    ops, app = tmp_path / "ops", tmp_path / "ops" / "backend"
    app.mkdir(parents=True)
    _git(ops, "init", "-q")
    (ops / "stacks.txt").write_text("the ops repository\n")
    _git(ops, "add", "-A")
    _git(ops, "commit", "-q", "-m", "ops")
    _git(app, "init", "-q")  # the app is a repository of its own inside (a nested checkout, a submodule)
    (app / "main.py").write_text("print('app')\n")
    _git(app, "add", "-A")
    _git(app, "commit", "-q", "-m", "app")
    assert app_commit(app) == (_git(app, "rev-parse", "HEAD"), False)
    (app / ".deployctl" / "local").mkdir(parents=True)
    (app / ".deployctl" / "local" / "ledger.db").write_text("")
    assert app_commit(app)[1] is False  # deployctl's own state is not a change to the app
    (app / "new.py").write_text("")
    assert app_commit(app)[1] is True  # an untracked file is shipped by the build, so the tree is dirty
    (app / "new.py").unlink()
    (app / "main.py").write_text("print('changed')\n")
    assert app_commit(app)[1] is True


def test_outside_git_nothing_is_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert app_commit(tmp_path) == (None, None)


def test_records_written_before_git_dirty_existed_still_load() -> None:
    old = {"id": "r0001", "stack": "local", "kind": "release", "started": 1.0, "command": "deployctl up local",
           "git_sha": "abc", "stages": [{"name": "build", "status": "ok", "elapsed_s": 1.0, "detail": ""}]}
    record = decode_record(json.dumps(old), "r0001")  # the ledgers' own loader
    assert (record.git_sha, record.git_dirty) == ("abc", None)
    assert decode_record(json.dumps(record.to_dict()), "r0001") == record
