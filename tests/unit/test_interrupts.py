"""A signal that lands while a process is being started is raised only once the process is recorded."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deployctl import interrupts
from deployctl.targets.local import processes


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_held_signal_is_raised_when_the_block_ends(handlers: None) -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts.held():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")
    assert reached == ["after the signal"]
    with pytest.raises(KeyboardInterrupt):  # outside held() a signal interrupts at once
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass


def test_a_signal_while_a_job_is_recorded_stops_the_job(handlers: None, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The window the e2e signal test once hit by chance: the job has started, its record is being written."""
    note = processes._note

    def note_then_signal(record: Path | None, **fields: object) -> None:
        note(record, **fields)
        if fields.get("state") == "running":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(processes, "_note", note_then_signal)
    record = tmp_path / "executions" / "migrate-r0002.json"
    with pytest.raises(KeyboardInterrupt):
        processes.run_job([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, dict(os.environ),
                          tmp_path / "job.log", 120, record)
    data = json.loads(record.read_text())
    assert data["state"] == "stopped"
    assert not psutil.pid_exists(data["pid"])
