"""The local startup probe: a route the app does not have fails at once, naming the path and the status."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from deployctl.errors import DeployctlError
from deployctl.targets.local import processes


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_404_fails_at_once_naming_the_path_and_the_status(tmp_path: Path) -> None:
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DeployctlError) as caught:
            processes.wait_ready(f"http://127.0.0.1:{port}/startup", psutil.Process(server.pid), 30, tmp_path / "log")
        assert time.monotonic() - started < 10  # not the 30 s budget
    finally:
        server.kill()
        server.wait()
    assert caught.value.message == "the startup probe GET /startup answered HTTP 404: the app has no such route"
