"""The fault matrix: a release interrupted at a marked stage (kill -9 or a signal), with a canary secret.

Each row starts from a serving release, interrupts a second one at its stage, and then checks five
invariants, as issue 12 states them:
1. traffic is on a revision that passed smoke (the revision that answers is one a succeeded run deployed,
   and its record's smoke stage passed, or the first release's);
2. the lock is free, held by a live holder, or reported stale;
3. the ledger is readable and matches what serves;
4. a rerun converges without duplicates (`up` succeeds or finds nothing to do, a second `up` is a no-op,
   no revision serves twice under two ids);
5. the canary secret appears in no output and in no file outside the secret store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Project, SteadyClient

pytestmark = pytest.mark.e2e

CANARY = "tok_canary_5f1c0e9a7d"  # the provided API_TOKEN: every secret value must stay out of sight


def _until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("the marked stage was not reached")


def _running(project: Project) -> dict[str, Any] | None:
    import json
    import sqlite3

    ledger = project.state / "ledger.db"
    if not ledger.exists():
        return None
    try:
        with sqlite3.connect(ledger) as db:
            rows = db.execute("SELECT record FROM releases ORDER BY seq DESC LIMIT 1").fetchall()
    except sqlite3.Error:
        return None
    record = json.loads(rows[0][0]) if rows else None
    return record if record and record.get("outcome") == "running" else None


def _reached(project: Project, stage: str) -> bool:
    """The running record has finished every stage before *stage* (so *stage* is under way)."""
    order = ["build", "migrate", "deploy", "smoke", "promote", "init"]
    record = _running(project)
    return bool(record) and [s["name"] for s in record["stages"]] == order[: order.index(stage)]


def _traffic_split(project: Project) -> bool:
    import json

    try:
        return len(json.loads((project.state / "traffic" / "api.json").read_text())["splits"]) == 2
    except (FileNotFoundError, ValueError, KeyError):
        return False


# (stage, how to make it last, how to interrupt, what marks the moment)
ROWS = [
    ("migrate", {"MIGRATE_SLEEP_S": 4}, signal.SIGKILL, None),
    ("migrate", {"MIGRATE_SLEEP_S": 30}, signal.SIGINT, None),
    ("deploy", {"START_DELAY_S": 3}, signal.SIGKILL, None),
    ("smoke", {"DOCS_DELAY_S": 3}, signal.SIGTERM, None),
    ("promote", {"DOCS_DELAY_S": 1.5}, signal.SIGKILL, _traffic_split),
    ("init", {"INIT_SLEEP_S": 30}, signal.SIGINT, None),
]


@pytest.mark.parametrize(("stage", "slow", "sig", "mark"), ROWS,
                         ids=[f"{r[0]}-{signal.Signals(r[2]).name}" for r in ROWS])
def test_an_interrupted_release_leaves_a_correct_explained_state(project: Project, stage: str,
                                                                   slow: dict[str, float], sig: int,
                                                                   mark: Any) -> None:
    outputs: list[str] = []
    run = _recording(project, outputs)

    project.write_stack(api_token=True, steps=(10, 50, 100))
    run("secrets", "set", "local", "API_TOKEN", stdin=CANARY)
    run("up", "local")
    first = project.serving()
    project.variant(VERSION=2, **slow)
    proc = project.start("up", "local")
    _until(lambda: _reached(project, stage) and (mark is None or mark(project)))
    time.sleep(0.3)  # inside the stage's work, not at its edge
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    outputs.extend([out, err])
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)

    _invariants_after_the_fault(project, run, first)
    project.variant(VERSION=2)  # the fault's slowness gone; the change itself stays
    _wait_for_orphans(project)
    rerun = run("up", "local", "--lock-timeout", "60")
    assert rerun.returncode == 0
    again = run("up", "local")
    assert again.stdout.startswith("Nothing changed")  # converged: a second up is a no-op
    _invariants_after_the_fault(project, run, None)
    _no_canary(project, outputs)


def _two_releases(project: Project, outputs: list[str]) -> Any:
    """Two releases of the canary-carrying stack; the recording runner for what follows."""
    run = _recording(project, outputs)
    project.write_stack(api_token=True)
    run("secrets", "set", "local", "API_TOKEN", stdin=CANARY)
    run("up", "local")
    project.variant(VERSION=2)
    run("up", "local")
    return run


def _recording(project: Project, outputs: list[str]) -> Any:
    """project.run that keeps every output, for the canary check."""
    def run(*args: str, rc: int | None = 0, stdin: str | None = None) -> Any:
        out = project.run(*args, rc=rc, stdin=stdin)
        outputs.extend([out.stdout, out.stderr])
        return out

    return run


def _invariants_after_the_fault(project: Project, run: Any, first: str | None) -> None:
    serving = project.serving()
    status = project.status()
    # 2. the lock is free, held by a live holder, or reported stale
    lock = status["lock"]
    assert lock is None or lock["stale"] in (True, False)
    ledger = project.ledger()  # 3. readable …
    ids = [r["id"] for r in ledger]
    assert len(ids) == len(set(ids))
    # 1. what serves is a revision that passed smoke in a run that deployed it (or the first release's)
    deployed_by = [r for r in ledger if r["revisions"].get("api") == serving
                   and any(s["name"] == "deploy" and s["status"] == "ok" for s in r["stages"])]
    assert deployed_by, f"{serving} serves but no run deployed it"
    passed_smoke = any(s["name"] == "smoke" and s["status"] == "ok" for r in deployed_by for s in r["stages"])
    assert passed_smoke, f"{serving} serves but never passed smoke"
    # … and matches what serves: either a succeeded run's revisions serve (status names it), or a dead
    # run is still unsettled and what serves is the revision before it, which the next command settles
    if status["serving_release"] is not None:
        record = next(r for r in ledger if r["id"] == status["serving_release"])
        assert record["revisions"] == {"api": serving} and record["outcome"] == "succeeded"
    else:
        assert any(r["outcome"] == "running" for r in ledger) or status["traffic"]["api"][1:]
    if first is not None and status["serving_release"] is None:
        assert serving in (first, *(r["revisions"].get("api") for r in ledger))
    # 4, partly: no revision is recorded as deployed by two succeeded releases
    deployed = [r["revisions"].get("api") for r in ledger if r["outcome"] == "succeeded" and r["kind"] == "release"]
    assert len(deployed) == len(set(deployed))


def _converged(project: Project, run: Any, outputs: list[str]) -> None:
    """4 and 5 once the stack is released again: a second `up` is a no-op, the state is correct, no canary."""
    assert run("up", "local").stdout.startswith("Nothing changed")
    _invariants_after_the_fault(project, run, None)
    _no_canary(project, outputs)


def _wait_for_orphans(project: Project) -> None:
    """A job a dead command started keeps the lock until it ends (docs/runbook.md): give it the time."""
    import json

    import psutil

    def busy() -> bool:
        for path in (project.state / "executions").glob("*.json"):
            data = json.loads(path.read_text())
            if data.get("state") == "running" and psutil.pid_exists(data["pid"]):
                return True
        return False

    _until(lambda: not busy(), timeout=60)


def _no_canary(project: Project, outputs: list[str]) -> None:
    # 5. no canary secret in any output, or in any file outside the secret store
    assert not [o for o in outputs if CANARY in o]
    leaks = []
    for path in project.root.rglob("*"):
        if not path.is_file() or path.name == "secrets.json" or "postgres" in path.parts:
            continue
        try:
            if CANARY.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(project.root)))
        except OSError:
            continue
    assert leaks == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    assert CANARY not in ps  # never on a command line
    assert Path(project.state / "secrets.json").exists()


def test_a_damaged_ledger_is_named_repaired_and_the_state_stays_correct(project: Project) -> None:
    outputs: list[str] = []
    run = _two_releases(project, outputs)
    ledger = project.state / "ledger.db"
    ledger.write_bytes(ledger.read_bytes()[: ledger.stat().st_size // 2])  # a torn write
    damaged = run("up", "local", rc=5)
    assert "Traceback" not in damaged.stderr
    assert project.error(damaged).startswith("Error: ")
    assert "deployctl ledger repair local" in damaged.stderr
    run("ledger", "repair", "local")
    _invariants_after_the_fault(project, run, None)
    project.variant(VERSION=3)
    run("up", "local")
    _converged(project, run, outputs)


def test_a_rollback_after_a_rotation_never_serves_a_disabled_version(project: Project) -> None:
    outputs: list[str] = []
    run = _two_releases(project, outputs)
    run("secrets", "rotate", "local", "API_TOKEN", "--from-stdin", stdin=CANARY + "_v2")  # disables v1
    refused = run("rollback", "local", rc=5)
    assert "API_TOKEN" in project.error(refused)  # the pinned version is disabled: nothing moved
    _invariants_after_the_fault(project, run, None)
    run("rollback", "local", "--repin")  # the old code, pinned to the versions enabled now
    _invariants_after_the_fault(project, run, None)
    assert project.status()["lock"] is None
    _no_canary(project, outputs)


# -- issue 17: what serves is checked, not assumed ---------------------------------------------------------
def _kill_recorded(state_file: Path) -> int:
    """kill -9 the process a state file records (a router or a revision); wait until it is gone."""
    import psutil

    pid = int(json.loads(state_file.read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    _until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=10)
    return pid


def _canary_stack(project: Project, outputs: list[str], steps: tuple[int, ...] = (100,)) -> Any:
    run = _recording(project, outputs)
    project.write_stack(api_token=True, steps=steps)
    run("secrets", "set", "local", "API_TOKEN", stdin=CANARY)
    run("up", "local")
    return run


def test_a_killed_router_is_shown_dead_and_the_next_up_restarts_it(project: Project) -> None:
    outputs: list[str] = []
    run = _canary_stack(project, outputs)
    first = project.serving()
    _kill_recorded(project.state / "routers" / "api.json")

    health = project.status()["health"]
    assert health["answers"] is False
    assert health["services"]["api"] == {"revision": first, "revision_alive": True, "router_alive": False}
    assert "api: router DEAD, revision " + first + " alive" in run("status", "local").stdout
    planned = run("up", "local", "--dry-run").stdout
    assert "restart the router of api (it does not answer)" in planned and "Nothing changed" not in planned
    healed = run("up", "local")
    assert "healed: restarted the router of api" in healed.stdout
    assert project.serving() == first and project.status()["health"]["answers"] is True
    heal = project.ledger()[0]
    assert heal["kind"] == "heal" and [s["action"] for s in heal["plan"]] == ["run"]  # the plan it ran

    with SteadyClient(project.url) as client:
        assert run("up", "local").stdout.startswith("Nothing changed")
        project.variant(VERSION=2)
        run("up", "local")
        assert run("up", "local").stdout.startswith("Nothing changed")
    assert client.sent > 0 and client.failures == []
    _invariants_after_the_fault(project, run, None)
    _no_canary(project, outputs)


def test_a_killed_serving_revision_is_replaced_never_split_with_nor_routed_back_to(project: Project) -> None:
    outputs: list[str] = []
    run = _canary_stack(project, outputs, steps=(50, 100))
    first = project.serving()
    _kill_recorded(project.state / "revisions" / f"{first}.json")
    assert project.status()["health"]["services"]["api"]["revision_alive"] is False

    project.variant(VERSION=2)  # a change: its candidate must not share traffic with the corpse
    run("up", "local")
    second = project.serving()
    release = project.ledger()[0]
    promote = next(s for s in release["stages"] if s["name"] == "promote")
    assert release["outcome"] == "succeeded" and second != first
    assert promote["detail"].startswith("100%;"), promote["detail"]  # straight to 100 %, no 50 % step

    _kill_recorded(project.state / "revisions" / f"{second}.json")  # nothing changed, and it is dead
    healed = run("up", "local")
    third = project.serving()
    assert f"healed: replaced dead revision {second} with {third}" in healed.stdout
    heal = project.ledger()[0]
    assert [s["name"] for s in heal["stages"]] == ["build", "deploy", "smoke", "promote"]
    assert all(s["status"] == "ok" for s in heal["stages"])

    with SteadyClient(project.url) as client:
        project.variant(VERSION=3)  # a 50 % step again, with a previous revision that answers
        run("up", "local")
        assert run("up", "local").stdout.startswith("Nothing changed")
    assert client.sent > 0 and client.failures == []
    ready = [r for r in (project.state / "revisions").glob("*.json") if json.loads(r.read_text())["state"] == "ready"]
    assert len(ready) <= 2  # keep_revisions: 2; no corpse or failed candidate is left "ready"
    _invariants_after_the_fault(project, run, None)
    _no_canary(project, outputs)


DROP_EMAIL = '''"""Drop notes.email (contract): the release before still reads it."""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.drop_column("notes", "email")
'''


def test_rollback_across_rotations_compares_like_with_like_and_never_goes_forward(project: Project) -> None:
    outputs: list[str] = []
    run = _recording(project, outputs)
    project.write_stack(api_token=True)
    run("secrets", "set", "local", "API_TOKEN", stdin=CANARY)
    run("up", "local")  # r0001: its code runs on 0001
    (project.root / "app" / "migrations" / "versions" / "0005_drop_email.py").write_text(DROP_EMAIL)
    project.variant(VERSION=5)
    run("up", "local")  # r0002: the database goes to 0005, which is not rollback-safe
    run("secrets", "rotate", "local", "API_TOKEN", "--from-stdin", stdin=CANARY + "_2")  # r0003
    run("secrets", "rotate", "local", "API_TOKEN", "--from-stdin", stdin=CANARY + "_3")  # r0004: v2 disabled

    refused = run("rollback", "local", rc=5)  # r0003's code ran on 0005: only its pin stands in the way
    assert project.error(refused) == "Error: release r0003 is pinned to API_TOKEN v2, which is disabled"
    with SteadyClient(project.url) as client:  # users see no failed request through both rollbacks
        run("rollback", "local", "--repin")  # r0005: r0003's code again
        _invariants_after_the_fault(project, run, None)
        run("rollback", "local", "--repin")  # r0006: one further back, r0002's code
        _invariants_after_the_fault(project, run, None)
    assert client.sent > 0 and client.failures == []
    refused = run("rollback", "local", rc=5)  # r0001's code ran on 0001: crossing 0005 is real
    assert project.error(refused) == ("Error: rollback to r0001 crosses migration 0005_drop_email (r0002): release "
                                      "r0001's code ran on 0001")
    ledger = project.ledger()
    assert [(r["id"], r["restored"]) for r in ledger[:2]] == [("r0006", "r0002"), ("r0005", "r0003")]
    assert [r["accepted_risks"] for r in ledger] == [[]] * 6  # no false risk was accepted on the way
    assert {(r["migration_before"], r["migration_after"]) for r in ledger[:4]} == {("0005", "0005")}
    assert httpx.get(f"{project.url}/health", timeout=5).json()["v"] == 5  # never forward, never past r0002

    rerun = run("up", "local")
    assert rerun.returncode == 0
    _converged(project, run, outputs)


def test_an_empty_database_under_a_stack_that_had_data_is_refused(project: Project) -> None:
    outputs: list[str] = []
    run = _two_releases(project, outputs)  # the database is at 0002
    run("down", "local")
    shutil.rmtree(project.state / "postgres")  # the data directory is lost while the stack is down

    refused = run("up", "local", rc=5)
    assert project.error(refused) == ("Error: the local database is empty, but release r0002 left it at migration "
                                      "0002: its data directory .deployctl/local/postgres holds no database")
    assert "Restore the data directory .deployctl/local/postgres from a copy" in refused.stderr
    assert "deployctl up local --accept-empty-database" in refused.stderr
    assert not (project.state / "postgres").exists()  # nothing was made in its place
    assert [r["id"] for r in project.ledger()] == ["r0002", "r0001"]

    run("up", "local", "--accept-empty-database")
    record = project.ledger()[0]
    assert record["accepted_risks"] == ["empty-database"]
    assert (record["migration_before"], record["migration_after"]) == (None, "0002")  # said as it is
    _invariants_after_the_fault(project, run, None)
    _converged(project, run, outputs)


def test_a_deleted_lock_is_noticed_by_its_holder_and_by_the_next_command(project: Project) -> None:
    outputs: list[str] = []
    run = _recording(project, outputs)
    project.write_stack(api_token=True)
    run("secrets", "set", "local", "API_TOKEN", stdin=CANARY)
    run("up", "local")
    first = project.serving()
    project.variant(VERSION=2, START_DELAY_S=4)
    proc = project.start("up", "local")
    _until(lambda: _reached(project, "deploy"))
    (project.state / "lock.json").unlink()  # someone deletes the lock under a live release

    second = run("up", "local", "--lock-timeout", "0", rc=4)
    running = _running(project)
    assert running is not None  # not settled: its holder is alive
    assert project.error(second) == (f"Error: release {running['id']} is still running (pid {proc.pid}), "
                                     "but the deploy lock it took is gone")
    out, err = proc.communicate(timeout=60)
    outputs.extend([out, err])
    assert proc.returncode == 4
    assert "lost the deploy lock of 'local' (it was deleted or broken)" in err
    record = project.ledger()[0]
    assert (record["id"], record["outcome"]) == (running["id"], "interrupted")
    assert project.serving() == first  # traffic never moved: the holder stopped before its next step

    _invariants_after_the_fault(project, run, first)
    assert project.status()["lock"] is None
    project.variant(VERSION=2)
    assert run("up", "local").returncode == 0
    _converged(project, run, outputs)


def test_bad_input_changes_nothing_and_says_where(project: Project) -> None:
    """Row 4 of issue 17: a stack file that is not UTF-8 and an empty --to each get one line and their exit
    code, before any change; traffic, the ledger and the lock are as they were, and the next up converges."""
    outputs: list[str] = []
    run = _two_releases(project, outputs)
    serving, ledger = project.serving(), project.ledger()
    stack_file = project.root / "stacks" / "Pulumi.local.yaml"
    good = stack_file.read_bytes()
    at = good.index(b"# ") if b"# " in good else 0
    stack_file.write_bytes(good[:at] + b"\xe9" + good[at:])  # a Latin-1 byte in a UTF-8 file

    for args in (("up", "local"), ("rollback", "local"), ("status", "local")):
        refused = run(*args, rc=3)
        assert project.error(refused) == f"Error: stacks/Pulumi.local.yaml: not valid UTF-8 (byte {at}: 0xe9)"
        assert "Traceback" not in refused.stderr
    stack_file.write_bytes(good)

    refused = run("rollback", "local", "--to", "", rc=2)
    assert "Traceback" not in refused.stderr and "--to" in refused.stderr
    run("rollback", "local", "--to", "  ", rc=2)
    assert (project.serving(), project.ledger()) == (serving, ledger)  # nothing moved, nothing recorded
    _invariants_after_the_fault(project, run, serving)
    assert project.status()["lock"] is None
    _converged(project, run, outputs)
