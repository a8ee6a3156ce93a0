"""The release lifecycle on the local target: first up, code change, no-change, rollback."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.e2e


def test_first_up_serves_and_records_the_release(project: Project) -> None:
    out = project.run("up", "local")
    assert "Release r0001 succeeded" in out.stdout
    for stage in ("build", "migrate", "deploy", "smoke", "promote", "init"):
        assert f" {stage} " in out.stderr
    revision = project.serving()
    [record] = project.ledger()
    assert record["outcome"] == "succeeded"
    assert record["revisions"] == {"api": revision}
    assert record["previous"] == {}
    assert record["migration_before"] is None and record["migration_after"] == "0001"
    assert record["secret_versions"] == {"SECRET_KEY": "1", "DB_PASSWORD": "1", "DATABASE_URL": "1"}
    assert len(record["source_hash"]) == 64 and record["artifacts"]["api"].startswith("api-")
    assert [s["name"] for s in record["stages"]] == ["build", "migrate", "deploy", "smoke", "promote", "init"]
    assert all(s["status"] == "ok" for s in record["stages"])
    assert record["stages"][3]["detail"].endswith("; database login app accepts DB_PASSWORD v1")  # smoke
    status = project.status()
    assert status["serving_release"] == "r0001" and status["revisions"] == {"api": revision}
    assert status["migration_head"] == "0001" and status["lock"] is None


def test_code_change_deploys_a_new_revision_and_keeps_the_old_one_warm(project: Project) -> None:
    project.run("up", "local")
    first = project.serving()
    project.variant(VERSION=2)
    out = project.run("up", "local")
    assert "reused" not in out.stderr and "built api-" in out.stderr
    second = project.serving()
    assert second != first
    assert httpx.get(f"{project.url}/health").json()["v"] == 2
    latest = project.ledger()[0]
    assert latest["previous"] == {"api": first} and latest["migration_before"] == "0001"
    assert latest["migration_after"] == "0002"
    old = project.run("status", "local", "--json")  # the previous revision stays up for instant rollback
    assert old.returncode == 0
    rev_state = (project.state / "revisions" / f"{first}.json").read_text()
    assert '"state": "ready"' in rev_state


def test_no_change_up_is_a_noop(project: Project) -> None:
    project.run("up", "local")
    revision = project.serving()
    out = project.run("up", "local")
    assert out.stdout.startswith("Nothing changed: release r0001")
    assert project.serving() == revision
    assert len(project.ledger()) == 1
    forced = project.run("up", "local", "--force")
    assert "Release r0002 succeeded" in forced.stdout
    assert project.serving() != revision


def test_dry_run_prints_the_plan_and_changes_nothing(project: Project) -> None:
    out = project.run("up", "local", "--dry-run")
    assert "nothing will be changed" in out.stdout
    assert "build api from source" in out.stdout
    assert "pin secrets DATABASE_URL (create v1), DB_PASSWORD (create v1), SECRET_KEY (create v1)" in out.stdout
    assert not (project.state / "secrets.json").exists()
    assert project.ledger() == []


def test_rollback_to_previous_and_to_a_chosen_release(project: Project) -> None:
    project.run("up", "local")
    first = project.serving()
    project.variant(VERSION=2)
    project.run("up", "local")
    project.variant(VERSION=3)
    project.run("up", "local")
    third = project.serving()
    out = project.run("rollback", "local")
    assert "rolled back to release r0002" in out.stdout
    assert project.serving() not in (first, third)
    out = project.run("rollback", "local", "--to", "r0001")
    assert project.serving() == first
    records = project.ledger()
    assert records[0]["kind"] == "rollback" and records[0]["revisions"] == {"api": first}
    missing = project.run("rollback", "local", "--to", "r0099", rc=1)
    assert project.error(missing).startswith("Error: no release r0099 in the local ledger")


def test_rollback_restarts_a_stopped_revision(project: Project) -> None:
    project.run("up", "local")
    first = project.serving()
    for version in (2, 3, 4):  # keep_revisions is 2: the first revision's process is retired
        project.variant(VERSION=version)
        project.run("up", "local")
    rev = (project.state / "revisions" / f"{first}.json").read_text()
    assert '"state": "stopped"' in rev
    project.run("rollback", "local", "--to", "r0001")
    assert project.serving() == first


def test_down_stops_every_process(project: Project) -> None:
    project.run("up", "local")
    pids = [p.pid for p in psutil.process_iter() if str(project.root) in " ".join(_cmdline(p))]
    assert pids
    project.run("down", "local")
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    assert project.ledger()  # data stays without --purge


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return [*proc.cmdline(), proc.cwd()]
    except psutil.Error:
        return []


def test_the_dependency_venv_holds_bytecode(project: Project) -> None:
    """Revisions and jobs run with PYTHONDONTWRITEBYTECODE=1 (as in the image): the venv must bring its own
    bytecode, or every start compiles the dependencies again."""
    project.run("up", "local")
    venvs = Path(project.env["DEPLOYCTL_CACHE_DIR"]) / "venvs"
    compiled = [p for p in venvs.glob("*/lib/python3*/site-packages/psycopg/__pycache__/*.pyc")]
    assert compiled, "no bytecode beside psycopg in the dependency venv"
