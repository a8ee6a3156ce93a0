"""`python -m app` as deployctl starts it: listens on $HOST:$PORT, stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.app.support import PASSWORD, ROOT, SECRET_KEY, environment
from tests.ports import free_port


def _wait_ready(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"the service did not answer /health (exit code {proc.poll()})")


def test_the_server_answers_then_stops_on_sigterm(migrated: str) -> None:
    port = free_port()
    env = environment(migrated, SECRET_KEY=SECRET_KEY, PORT=str(port), HOST="127.0.0.1", K_REVISION="notes-00001")
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, proc)
        assert httpx.get(f"{base}/health").json()["revision"] == "notes-00001"
        assert httpx.get(f"{base}/startup").status_code == 200
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        log = proc.stdout.read() if proc.stdout else ""
    finally:
        proc.kill()
        proc.wait()
    assert code in (0, -signal.SIGTERM), log  # uvicorn may re-raise SIGTERM once it has shut down
    assert "Waiting for application shutdown." in log and "Application shutdown complete." in log
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log
    assert PASSWORD not in log and SECRET_KEY not in log
