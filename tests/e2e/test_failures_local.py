"""Failure rules: a bad candidate never gets traffic, a failed migration deploys nothing."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.e2e


def _revision_files(project: Project) -> set[str]:
    return {p.stem for p in (project.state / "revisions").glob("*.json")}


def test_startup_500_leaves_traffic_on_the_old_revision(project: Project) -> None:
    project.run("up", "local")
    good = project.serving()
    project.variant(VERSION=2, STARTUP_STATUS=500)
    out = project.run("up", "local", rc=1)
    first_line = project.error(out)
    assert first_line.startswith(
        "Error: release r0002 failed at deploy: the startup probe GET /startup did not answer 200 within")
    assert f"Traffic stays on {good} at {project.url}." in first_line
    assert "`deployctl rollback local`" in out.stderr and "`deployctl up local` again" in out.stderr
    assert "Traceback" not in out.stderr
    assert project.serving() == good
    record = project.ledger()[0]
    assert record["outcome"] == "failed" and record["previous"] == {"api": good}
    assert [(s["name"], s["status"]) for s in record["stages"]][-1] == ("deploy", "failed")


def test_smoke_failure_never_gives_the_candidate_traffic(project: Project) -> None:
    project.run("up", "local")
    good = project.serving()
    project.variant(VERSION=2, DOCS_STATUS=404)
    out = project.run("up", "local", rc=1)
    assert "failed at smoke: smoke checks failed on api-00002" in out.stderr
    assert "/docs: HTTP 404, expected 200" in out.stderr
    assert project.serving() == good
    record = project.ledger()[0]
    assert record["outcome"] == "failed" and record["revisions"]["api"].startswith("api-00002")
    assert '"state": "failed"' in (project.state / "revisions" / f"{record['revisions']['api']}.json").read_text()


def test_failed_first_release_says_nothing_serves(project: Project) -> None:
    project.variant(DOCS_STATUS=500)
    out = project.run("up", "local", rc=1)
    assert "Nothing serves yet." in out.stderr and "rollback" not in out.stderr


def test_failed_migration_deploys_nothing(project: Project) -> None:
    project.run("up", "local")
    good = project.serving()
    before = _revision_files(project)
    project.variant(VERSION=2, MIGRATE_EXIT=3)
    out = project.run("up", "local", rc=1)
    assert "failed at migrate: migration failed after 2 attempt(s): exit code 3: migration 0002 failed" in out.stderr
    assert "Nothing was deployed." in out.stderr
    assert _revision_files(project) == before
    assert project.serving() == good
    record = project.ledger()[0]
    assert record["outcome"] == "failed" and record["revisions"] == {}
    assert record["migration_before"] == "0001"


def test_migration_timeout_is_a_failure(project: Project) -> None:
    project.run("up", "local")
    project.write_stack(migrate_timeout=1)
    project.variant(VERSION=2, MIGRATE_SLEEP_S=5)
    out = project.run("up", "local", rc=1)
    assert "timed out after 1s" in out.stderr


def test_bad_image_reference_is_a_usage_error(project: Project) -> None:
    out = project.run("up", "local", "--image", "europe-docker.pkg.dev/p/r/api:latest", rc=2)
    assert "must be pinned by digest" in out.stderr


def test_failed_init_is_a_warning_and_the_release_serves(project: Project) -> None:
    project.variant(INIT_EXIT=2)
    out = project.run("up", "local")
    assert "Warning: the init job failed; the release serves anyway." in out.stderr
    revision = project.serving()
    record = project.ledger()[0]
    assert record["outcome"] == "succeeded" and record["revisions"] == {"api": revision}
    init = record["stages"][-1]
    assert init["name"] == "init" and init["status"] == "warning"
    assert "exit code 2: index build failed: out of memory" in init["detail"]
