"""Output to a reader that went away (`deployctl … | head -1`) never stops a command half-way: the writes
stop, the work goes on, and the command exits as it would have.

Each test runs deployctl's entry point in a child process whose stdout or stderr is a pipe with no reader
(Python ignores SIGPIPE, so each write raises BrokenPipeError), and a command that writes progress lines,
then a result, then leaves a mark that it got to the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A command as the CLI runs one: progress lines through the console reporter (stderr), a table and a line on
# stdout, then JSON, and a warning printed by a library (lock.py and the gcp engine print() theirs).
COMMAND = '''
import sys, click
from deployctl import cli

@click.command()
def work():
    from deployctl.output import ConsoleReporter, emit_json, line, table
    from deployctl.pipeline.model import StageResult
    reporter = ConsoleReporter()
    for stage in ("build", "deploy", "smoke", "promote"):
        reporter.stage_finished(StageResult(stage, "ok", 0.25, "x" * 300))
        reporter.info("y" * 300)
        table("t", ["A"], [["z" * 100]] * 20)
        print("Warning: " + "w" * 300, file=sys.stderr)
    line("done " * 100)
    emit_json({"done": True})
    open(sys.argv[1], "w").write("finished")

cli.COMMANDS["work"] = ("__main__", "work", "A command that writes a lot.")
cli.main(["work"])
'''


def _run(closed: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, closed: write}
    try:
        return subprocess.run([sys.executable, "-c", COMMAND, str(tmp_path / "mark")], text=True, timeout=60,
                              check=False, **streams)  # type: ignore[call-overload,no-any-return]
    finally:
        os.close(write)


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_pipe_stops_the_writes_not_the_command(tmp_path: Path, closed: str) -> None:
    out = _run(closed, tmp_path)
    assert (tmp_path / "mark").read_text() == "finished", (out.stdout, out.stderr)
    assert out.returncode == 0, (out.stdout, out.stderr)
    other = out.stderr if closed == "stdout" else out.stdout
    assert "BrokenPipe" not in other and "Exception ignored" not in other
    if closed == "stdout":
        assert out.stderr.count("✓ deploy") == 1 and out.stderr.count("Warning: ") == 4
    else:
        assert out.stdout.endswith('{\n  "done": true\n}\n')
