"""Revisions and jobs as real processes on this machine.

Rule: a revision is an immutable record (artifact, pinned secret versions, port) plus a process started
in its own session, so it outlives the deployctl command that started it; its liveness is checked by pid
*and* process start time (``deployctl.liveness.alive``, which the deploy lock uses too), so a
reused pid is never mistaken for it. Secret values reach a process only through its environment, never its
command line, and process output is redacted before deployctl repeats any of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import psutil

from deployctl import interrupts
from deployctl.errors import DeployctlError
from deployctl.joblog import quote
from deployctl.liveness import alive
from deployctl.targets.local.fs import atomic_write


@dataclass
class RevisionState:
    name: str
    service: str
    artifact: str
    port: int
    secret_versions: dict[str, str]
    created: float
    pid: int | None = None
    pid_started: float | None = None
    state: str = "starting"  # starting, ready, stopped, failed
    log: str = ""

    @classmethod
    def load(cls, text: str) -> RevisionState:
        """A revision from its file. Keys an older deployctl wrote and this one no longer keeps
        (``env_keys``) are dropped."""
        data = json.loads(text)
        return cls(**{name: value for name, value in data.items() if name in _REVISION_FIELDS})


_REVISION_FIELDS = {f.name for f in fields(RevisionState)}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RevisionStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def get(self, name: str) -> RevisionState | None:
        try:
            return RevisionState.load(self.path(name).read_text())
        except FileNotFoundError:
            return None

    def save(self, rev: RevisionState) -> None:
        atomic_write(self.path(rev.name), json.dumps(asdict(rev)))

    def all(self, service: str) -> list[RevisionState]:
        revs = [RevisionState.load(p.read_text()) for p in sorted(self.dir.glob("*.json"))]
        return sorted((r for r in revs if r.service == service), key=lambda r: r.created)

    def next_name(self, service: str) -> str:
        count = len(self.all(service)) + 1
        return f"{service}-{count:05d}-{os.urandom(2).hex()[:3]}"


def spawn(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> psutil.Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return psutil.Process(proc.pid)


def stop(pid: int | None, started: float | None, grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after *grace_s*."""
    if not alive(pid, started):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and alive(pid, started):
        _reap(pid)
        time.sleep(0.01)
    if alive(pid, started):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_ready(url: str, proc: psutil.Process, timeout_s: float, log: Path) -> None:
    """Poll the startup probe until it answers 200; fail early if the process exits, and at once on a 404 or
    405: the app is up and has no such route, which waiting does not change."""
    import httpx

    from deployctl.pipeline.smoke import tls

    path = httpx.URL(url).raw_path.decode() or "/"
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=2.0, verify=tls()) as client:
        while time.monotonic() < deadline:
            if not alive(proc.pid, proc.create_time()):
                code = _exit_code(proc)
                raise DeployctlError(f"the revision exited (code {code}) before it was ready", f"See its log: {log}")
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
                if response.status_code in (404, 405):
                    raise DeployctlError(
                        f"the startup probe GET {path} answered {last}: the app has no such route",
                        "Set the service's probes.startup.path to a route the app answers with 200 (a health "
                        "endpoint), or remove probes.startup.")
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.02)  # a refused connection costs next to nothing; the candidate's start is the wait
    raise DeployctlError(f"the startup probe GET {path} did not answer 200 within {timeout_s:.0f}s (last: {last})",
                         f"See its log: {log}")


def _exit_code(proc: psutil.Process) -> str:
    try:
        _, status = os.waitpid(proc.pid, os.WNOHANG)
        return str(os.waitstatus_to_exitcode(status))
    except (ChildProcessError, OSError):
        return "unknown"


def run_job(command: list[str], cwd: Path, env: dict[str, str], log: Path, timeout_s: float,
            record: Path | None = None, secret_values: list[str] | None = None) -> tuple[bool, str]:
    """Run one attempt of a job in its own process group; (succeeded, what happened). What happened quotes the
    line of a failed job's log that says why, with *secret_values* (longest first) taken out of the whole log
    before that line is picked and cut.

    The job belongs to the command that runs it: *record* (``executions/<execution>.json``) names its
    process and this one while it runs, so a next command can tell that a dead command's job is still at
    work (see ``running_jobs``); on SIGINT or SIGTERM (KeyboardInterrupt here) the job's process group is
    stopped before the interruption goes on, and the record says so."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    started: float | None = None
    with open(log, "wb") as out:
        try:
            with interrupts.held():  # a signal while the job starts is raised once it is recorded, below
                try:
                    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                except OSError as exc:
                    return False, f"could not start {command[0]!r}: {exc.strerror}"
                started = psutil.Process(proc.pid).create_time()
                _note(record, state="running", pid=proc.pid, pid_started=started, owner=os.getpid(),
                      owner_started=psutil.Process().create_time(), log=str(log))
            code = _wait(proc, timeout_s)
        except subprocess.TimeoutExpired:
            assert proc is not None  # only its wait can time out
            with interrupts.held():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                _note(record, state="timed out")
            return False, f"timed out after {timeout_s:.0f}s"
        except KeyboardInterrupt:
            if proc is not None:
                with interrupts.held():  # a second Ctrl-C does not cut the stop short
                    stop(proc.pid, started)
                    proc.wait()
                    _note(record, state="stopped")
            raise
    _note(record, state="succeeded" if code == 0 else "failed", exit_code=code)
    if code == 0:
        return True, "exit code 0"
    try:
        said = quote(log.read_text(errors="replace"), secret_values or [])
    except FileNotFoundError:
        said = ""
    return False, f"exit code {code}: {said}"


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """``proc.wait(timeout_s)`` that returns as the process exits: Popen.wait polls with sleeps of up to 50 ms,
    which a job that takes half a second pays on every run; a pidfd wakes select() at the exit itself."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+: poll
        return proc.wait(timeout=timeout_s)
    try:
        if not select.select([pidfd], [], [], timeout_s)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    finally:
        os.close(pidfd)
    return proc.wait()


def _note(record: Path | None, **fields: object) -> None:
    if record is None:
        return
    try:
        data = json.loads(record.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(record, json.dumps({**data, **fields}))


def running_jobs(executions: Path, owner_pid: int, owner_started: float | None) -> list[str]:
    """The executions that a (possibly dead) command started and that still run: "migrate-r0002 (pid 123)"."""
    found = []
    for path in sorted(executions.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        same_owner = data.get("owner") == owner_pid and (
            owner_started is None or abs(float(data.get("owner_started", 0)) - owner_started) < 1)
        if same_owner and data.get("state") == "running" and alive(data.get("pid"), data.get("pid_started")):
            found.append(f"{path.stem} (pid {data['pid']})")
    return found
