"""A signal that lands while a process is being started is raised only once the process is recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
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
    try:
        with pytest.raises(KeyboardInterrupt):
            processes.run_job([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, dict(os.environ),
                              tmp_path / "job.log", 120, record)
        data = json.loads(record.read_text())
        assert data["state"] == "stopped"
        assert not psutil.pid_exists(data["pid"])
    finally:  # whatever failed above, the job is not left to the rest of the run
        pid = json.loads(record.read_text()).get("pid") if record.exists() else None
        if pid and psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_thread_holds_nothing_the_main_thread_is_interrupted_at_once(handlers: None) -> None:
    """Signals interrupt the main thread only; a worker's held() must not defer the main thread's interrupt
    (pipeline/executor.py waits for its workers and then undoes the stage)."""
    inside, release, ended = threading.Event(), threading.Event(), []

    def worker() -> None:
        with interrupts.held():
            inside.set()
            release.wait(10)
        ended.append("without an interrupt")

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(10)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                time.sleep(0.001)
    finally:
        release.set()
        thread.join(10)
    assert ended == ["without an interrupt"]


def test_a_sigint_the_shell_ignores_stays_ignored() -> None:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a non-interactive shell leaves
        interrupts.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is interrupts.handler
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_an_interrupted_command_exits_130_even_through_code_run_by_exec(tmp_path: Path) -> None:
    """CPython marks a KeyboardInterrupt that passed through exec()'d code (a dataclass being made during a
    lazy import) as unhandled, and `python -m deployctl` would then end by SIGINT (-2) after deployctl caught
    it and asked for 130 (a console script exits through another path, with 130)."""
    (tmp_path / "boom.py").write_text(
        "import click\n"
        "from deployctl import cli\n"
        "@click.command('boom')\n"
        "def boom():\n"
        "    exec('raise KeyboardInterrupt')\n"
        "cli.cli.get_command = lambda ctx, name: boom\n"
        "cli.main(['boom'])\n"
    )
    done = subprocess.run([sys.executable, "-m", "boom"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().endswith("Aborted.")
