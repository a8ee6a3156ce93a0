"""The README's main command on the real sample app: `deployctl up local` with the shipped stack file
(on a free port), then a code change and a rollback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_sample_app_releases_serves_and_rolls_back(tmp_path: Path, venv_cache: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(REPO / "app", proj / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "stacks").mkdir()
    shutil.copy(REPO / "Pulumi.yaml", proj / "Pulumi.yaml")  # the app's one definition
    port = free_port()
    stack = (REPO / "stacks" / "Pulumi.local.yaml").read_text()
    (proj / "stacks" / "Pulumi.local.yaml").write_text(re.sub(r"(deployctl:local:\n\s+port: )8080", rf"\g<1>{port}",
                                                              stack))
    env = {**os.environ, "DEPLOYCTL_CACHE_DIR": str(venv_cache)}

    def dc(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "deployctl", *args], cwd=proj, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out

    url = f"http://127.0.0.1:{port}"
    try:
        out = dc("up", "local")
        assert "migrate-r0001: empty → 0002" in out.stderr
        assert "4/4 checks passed" in out.stderr and "init-r0001: exit code 0" in out.stderr
        first = httpx.get(f"{url}/health").json()["revision"]
        assert httpx.get(f"{url}/startup").json()["checks"] == {"database": "ok", "secret_key": "ok"}
        created = httpx.post(f"{url}/api/notes", json={"title": "hello", "tags": ["demo"]})
        assert created.status_code == 201
        with open(proj / "app" / "main.py", "a") as handle:
            handle.write("\n# a code change\n")
        dc("up", "local")
        second = httpx.get(f"{url}/health").json()["revision"]
        assert second != first
        assert [n["title"] for n in httpx.get(f"{url}/api/notes", params={"tag": "demo"}).json()] == ["hello"]
        dc("rollback", "local")
        assert httpx.get(f"{url}/health").json()["revision"] == first
    finally:
        subprocess.run([sys.executable, "-m", "deployctl", "down", "local", "--purge", "--yes"], cwd=proj, env=env,
                       capture_output=True, check=False)
