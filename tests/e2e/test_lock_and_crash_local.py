"""Concurrency and crashes: one deploy at a time, and kill -9 at any point converges on the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.e2e


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def _stage_running(project: Project, stage: str) -> bool:
    ledger = project.state / "ledger.db"
    if not ledger.exists():
        return False
    import sqlite3

    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT record FROM releases ORDER BY seq DESC LIMIT 1").fetchall()
    if not rows:
        return False
    record = json.loads(rows[0][0])
    done = [s["name"] for s in record["stages"]]
    order = ["build", "migrate", "deploy", "smoke", "promote", "init"]
    return record["outcome"] == "running" and done == order[: order.index(stage)]


def _jobs_running(project: Project) -> list[dict]:  # type: ignore[type-arg]
    """Executions the local target recorded as running whose process is still alive."""
    import psutil

    found = []
    for path in (project.state / "executions").glob("*.json"):
        data = json.loads(path.read_text())
        if data.get("state") == "running" and psutil.pid_exists(data["pid"]):
            found.append(data)
    return found


def _running_job(project: Project) -> bool:
    """The migrate job runs and its execution record names it (kill -9 lands after the record, not before)."""
    return bool(_migrate_processes(project)) and bool(_jobs_running(project))


def _migrate_processes(project: Project) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline", "cwd"])
            if "app.migrate" in " ".join(p.info["cmdline"] or []) and str(project.root) in (p.info["cwd"] or "")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_migrate_stops_the_job_and_records_it(project: Project, sig: int) -> None:
    project.run("up", "local")
    good = project.serving()
    project.variant(VERSION=2, MIGRATE_SLEEP_S=30)
    proc = project.start("up", "local")
    _wait_for(lambda: _stage_running(project, "migrate") and _migrate_processes(project))
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=30) == 130
    assert _migrate_processes(project) == [] and _jobs_running(project) == []  # no orphan job
    [execution] = [json.loads(p.read_text()) for p in (project.state / "executions").glob("migrate-r0002.json")]
    assert execution["state"] == "stopped"
    record = project.ledger()[0]
    assert record["outcome"] == "interrupted"
    assert record["message"] == ("stopped by a signal during migrate; its migrate job was stopped; its process "
                                 "stopped before it finished; traffic was left where it was")
    assert project.serving() == good and project.status()["lock"] is None


def test_a_dead_holders_running_job_keeps_the_lock(project: Project) -> None:
    project.run("up", "local")
    gate = project.gate
    project.variant(VERSION=2, MIGRATE_GATE=str(gate))
    proc = project.start("up", "local")
    _wait_for(lambda: _stage_running(project, "migrate") and _running_job(project))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    held = project.run("up", "local", "--lock-timeout", "0.3", rc=4)  # not taken over: the job still runs
    assert "the holder is gone but its job migrate-r0002 (pid " in project.error(held)
    assert len(_migrate_processes(project)) == 1  # and no second migration was started
    project.variant(VERSION=2)
    rerun = project.start("up", "local", "--lock-timeout", "60")
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(rerun.stderr or []), daemon=True)
    reader.start()
    _wait_for(lambda: any(line.startswith("Waiting up to 60s for the deploy lock") for line in said))
    gate.touch()  # only now does the orphaned migration finish: the rerun waited for it, then takes over
    assert rerun.wait(timeout=60) == 0
    reader.join(10)
    assert any("recovered a stale deploy lock" in line for line in said)
    outcomes = {r["id"]: r["outcome"] for r in project.ledger()}
    assert outcomes == {"r0003": "succeeded", "r0002": "interrupted", "r0001": "succeeded"}


def test_a_second_up_waits_then_names_the_holder(project: Project) -> None:
    project.run("up", "local")
    gate = project.gate
    project.variant(VERSION=2, MIGRATE_GATE=str(gate))
    first = project.start("up", "local")
    _wait_for(lambda: (project.state / "lock.json").exists())
    holder = json.loads((project.state / "lock.json").read_text())
    second = project.run("up", "local", "--lock-timeout", "0.5", rc=4)
    expected = f"Error: stack 'local' is locked: lock {holder['id']} held by pid {first.pid}"
    assert project.error(second).startswith(expected)
    assert f"deployctl unlock local --force {holder['id']}" in second.stderr
    gate.touch()
    assert first.wait(timeout=60) == 0
    ids = [r["id"] for r in project.ledger()]
    assert ids == ["r0002", "r0001"]  # the waiting command never started a release


def test_concurrent_ups_never_interleave(project: Project) -> None:
    project.run("up", "local")
    project.variant(VERSION=2, MIGRATE_SLEEP_S=1)
    procs = [project.start("up", "local", "--lock-timeout", "60") for _ in range(2)]
    results = [p.wait(timeout=120) for p in procs]
    assert results == [0, 0]
    records = sorted(project.ledger(), key=lambda r: r["id"])
    # one released v2, the other found nothing to do once it got the lock (no ledger entry for a no-op)
    assert [r["outcome"] for r in records] == ["succeeded", "succeeded"]
    spans = [(r["started"], r["finished"]) for r in records]
    assert spans[0][1] <= spans[1][0]


def test_kill_9_during_migrate_then_rerun_converges(project: Project) -> None:
    project.run("up", "local")
    good = project.serving()
    gate = project.gate
    project.variant(VERSION=2, MIGRATE_GATE=str(gate))
    proc = project.start("up", "local")
    _wait_for(lambda: _stage_running(project, "migrate") and _running_job(project))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert project.serving() == good
    assert project.status()["lock"]["stale"] is False  # its migrate job outlived it and still runs
    gate.touch()  # and now finishes
    _wait_for(lambda: not _jobs_running(project), timeout=30)
    status = project.status()
    assert status["lock"]["stale"] is True  # now nothing of it runs
    project.variant(VERSION=2)
    out = project.run("up", "local")
    assert "recovered a stale deploy lock" in out.stderr
    assert "release r0002 was interrupted earlier" in out.stderr
    assert project.serving() != good
    outcomes = {r["id"]: r["outcome"] for r in project.ledger()}
    assert outcomes == {"r0003": "succeeded", "r0002": "interrupted", "r0001": "succeeded"}
    assert project.status()["lock"] is None


def test_kill_9_during_deploy_then_rerun_converges(project: Project) -> None:
    project.run("up", "local")
    good = project.serving()
    project.variant(VERSION=2, START_DELAY_S=2.5)
    proc = project.start("up", "local")
    _wait_for(lambda: _stage_running(project, "deploy"))
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert project.serving() == good
    orphan = max((project.state / "revisions").glob("api-00002-*.json"))
    orphan_pid = json.loads(orphan.read_text())["pid"]
    project.run("up", "local")
    new = project.serving()
    assert new not in (good, orphan.stem)
    assert json.loads(orphan.read_text())["state"] == "stopped"  # the orphan candidate was cleaned up
    time.sleep(0.2)
    alive = subprocess.run(["ps", "-o", "stat=", "-p", str(orphan_pid)], capture_output=True, text=True).stdout
    assert alive.strip() == "" or alive.startswith("Z")  # gone, or a zombie its (non-reaping) parent keeps


def test_unlock_force_breaks_a_live_holders_lock(project: Project) -> None:
    project.run("up", "local")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        lock = {"id": "feedbeef", "pid": sleeper.pid, "host": os.uname().nodename, "command": "deployctl up local",
                "since": time.time(), "heartbeat": time.time(), "pid_started": None}
        (project.state / "lock.json").write_text(json.dumps(lock))
        out = project.run("up", "local", "--force", "--lock-timeout", "0", rc=4)
        assert "held by pid" in out.stderr and str(sleeper.pid) in out.stderr
        shown = project.run("unlock", "local", rc=4)  # locked: a state for scripts, not an error
        assert "Break it with: deployctl unlock local --force feedbeef" in shown.stdout
        wrong = project.run("unlock", "local", "--force", "00000000", rc=1)
        assert "held by lock feedbeef, not 00000000" in wrong.stderr
        project.run("unlock", "local", "--force", "feedbeef")
        project.run("up", "local", "--force")
    finally:
        sleeper.kill()
        sleeper.wait()


def _traffic(project: Project) -> list[tuple[str, int]]:
    try:
        data = json.loads((project.state / "traffic" / "api.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [(s["revision"], s["percent"]) for s in data["splits"]]


def test_kill_9_during_a_canary_switch_goes_back_to_the_revision_that_served(project: Project) -> None:
    project.write_stack(steps=(10, 50, 100))
    project.run("up", "local")
    good = project.serving()
    project.variant(VERSION=2, DOCS_DELAY_S=1.5)  # each step's checks through the service URL take 1.5 s
    proc = project.start("up", "local")
    _wait_for(lambda: len(_traffic(project)) == 2, timeout=60)  # 10 % on the candidate
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    split = _traffic(project)
    assert len(split) == 2 and (good, 90) in split  # what a dead process leaves behind …
    shown = project.run("status", "local").stdout
    assert f"{good} 90%" in shown  # … and status shows the real split
    project.run("releases", "local")  # read-only: settles nothing
    assert len(_traffic(project)) == 2
    project.variant(VERSION=2)
    out = project.run("up", "local")  # the next command that takes the lock settles it first
    assert "release r0002 was interrupted during its traffic switch; traffic is back on " + good in out.stderr
    outcomes = {r["id"]: r["outcome"] for r in project.ledger()}
    assert outcomes == {"r0003": "succeeded", "r0002": "interrupted", "r0001": "succeeded"}
    r3 = project.ledger()[0]
    assert r3["previous"] == {"api": good}  # the revision that served fully, not the interrupted candidate
    assert _traffic(project) == [(r3["revisions"]["api"], 100)]


def test_a_signal_while_a_candidate_starts_stops_it(project: Project) -> None:
    """The candidate is not yet deploy's to return (its startup probe has not passed), so the stage's undo
    does not know it: the target stops it itself before the interruption goes on."""
    project.run("up", "local")
    good = project.serving()
    project.variant(VERSION=2, START_DELAY_S=30)
    proc = project.start("up", "local")

    def candidate() -> dict | None:  # type: ignore[type-arg]
        for path in (project.state / "revisions").glob("*.json"):
            data = json.loads(path.read_text())
            if data["name"] != good and data.get("pid"):
                return data  # type: ignore[no-any-return]
        return None

    _wait_for(lambda: _stage_running(project, "deploy") and candidate() is not None)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    started = candidate()
    assert started is not None and started["state"] == "failed"
    import psutil

    alive = psutil.pid_exists(started["pid"]) and psutil.Process(started["pid"]).status() != psutil.STATUS_ZOMBIE
    if alive:  # not left behind for the rest of the suite, whatever the outcome
        os.killpg(started["pid"], signal.SIGKILL)
    assert not alive
    assert project.serving() == good and project.ledger()[0]["outcome"] == "interrupted"
