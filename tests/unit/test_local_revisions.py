"""The local target's revision files: what an older deployctl wrote still loads."""

from __future__ import annotations

import json
from pathlib import Path

from deployctl.targets.local.processes import RevisionStore


def test_a_revision_written_with_env_keys_still_loads(tmp_path: Path) -> None:
    old = {"name": "api-00001-abc", "service": "api", "artifact": "api-1234", "port": 8001,
           "secret_versions": {"SECRET_KEY": "1"}, "created": 1.0, "pid": None, "pid_started": None,
           "state": "stopped", "log": "", "env_keys": ["SECRET_KEY"]}
    (tmp_path / "api-00001-abc.json").write_text(json.dumps(old))
    store = RevisionStore(tmp_path)

    rev = store.get("api-00001-abc")

    assert rev is not None and (rev.artifact, rev.port, rev.state) == ("api-1234", 8001, "stopped")
    assert [r.name for r in store.all("api")] == ["api-00001-abc"]
