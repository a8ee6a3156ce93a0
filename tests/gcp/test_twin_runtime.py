"""The twin runs the real code (tests/fakes/runtime.py): a release of the sample app on the fake cloud builds the
image from the real source, the migrate job runs Alembic against a real Postgres standing in for Cloud SQL, the
candidate revision is the real app started as Cloud Run starts it, and the smoke checks and users' requests
reach that process. So what only shows when the code runs — a secret version that cannot be read at start, an app
that crashes, a broken migration, a login that stops working — fails here as it would on Google Cloud."""

from __future__ import annotations

import json
import threading
import time

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator, rotate
from tests.fakes.drongo_ext import secret_values
from tests.fakes.runtime import Runtime
from tests.gcp.conftest import IMAGE, SERVICE, Cloud

pytestmark = pytest.mark.twin

CONNECTION = "example-staging:europe-central2:staging-db"


def _up(cloud: Cloud, reporter):
    return orchestrator.release(cloud.target(), cloud.options(None), reporter)


def _get(cloud: Cloud, path: str) -> tuple[int, str]:
    """A user's request to the service URL (public: no token needed)."""
    return cloud.http.handle(f"/_s/staging-api{path}")


def _finished(runtime: Runtime, job_id: str, deadline_s: float = 60) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        runs = runtime.execution(job_id)
        if runs and runs[-1].state != "running":
            return runs[-1].state
        time.sleep(0.1)
    raise AssertionError(f"{job_id} still running after {deadline_s}s")


def test_a_release_builds_migrates_and_serves_the_real_app(cloud: Cloud, runtime: Runtime, reporter) -> None:
    record = _up(cloud, reporter)
    assert record.outcome == "succeeded", record.message
    revision = record.revisions["api"]
    assert cloud.run.serving(SERVICE) == {revision: 100}
    # the image that runs is the one built from this source
    assert record.artifacts["api"].rpartition("@")[2] in runtime.images
    # the migrate job ran Alembic against the Postgres that stands in for Cloud SQL
    sql = runtime.sql[CONNECTION]
    assert sql.query("SELECT version_num FROM alembic_version") == [("0002",)]
    migrate = runtime.execution("staging-api-migrate")
    assert [m.state for m in migrate] == ["succeeded"]
    assert "Running upgrade 0001 -> 0002" in migrate[0].log
    # the revision is the real app, started with its revision's name; a user's request reaches it
    status, body = _get(cloud, "/health")
    assert status == 200 and json.loads(body)["revision"] == revision
    assert _get(cloud, "/api/notes") == (200, "[]")  # a query on the migrated table, as the app's login
    # the smoke checks were answered by that process (its own access log), not by the fake
    served = runtime.log(revision)
    for path in ("/health", "/startup", "/docs", "/"):
        assert f'"GET {path} HTTP/1.1" 200' in served, path
    # the non-blocking init job builds the indexes once the migrations are there
    assert _finished(runtime, "staging-api-init") == "succeeded"
    indexes = {row[0] for row in sql.query("SELECT indexname FROM pg_indexes WHERE tablename = 'notes'")}
    assert {"notes_tags_gin", "notes_embedding_hnsw"} <= indexes


def test_a_revision_whose_secret_version_was_disabled_fails_to_start(cloud: Cloud, runtime: Runtime, reporter,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = _up(cloud, reporter)
    target = cloud.target()
    version = target.add_secret_version("SECRET_KEY", None)  # `deployctl secrets set`: the next release pins it
    start = runtime.start_revision

    def disabled_meanwhile(revision, template):  # someone disables it after the release pinned it
        target.secrets.disable("SECRET_KEY", version)
        return start(revision, template)

    monkeypatch.setattr(runtime, "start_revision", disabled_meanwhile)
    with pytest.raises(StageFailed) as failed:
        _up(cloud, reporter)
    assert failed.value.stage == "deploy", failed.value.message
    assert "SECRET_KEY" in failed.value.message and "DISABLED" in failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    candidate = next(n for n in cloud.run.revision_names(SERVICE) if n != first.revisions["api"])
    full = f"{SERVICE}/revisions/{candidate}"
    ready = next(c for c in cloud.run.revisions[full].conditions if c.type_ == "Ready")
    assert ready.state.name == "CONDITION_FAILED" and f"version {version}" in ready.message
    assert full not in runtime.instances  # the instance never started: no process ever had the env
    status, body = _get(cloud, "/health")
    assert status == 200 and json.loads(body)["revision"] == first.revisions["api"]


def test_an_app_that_crashes_at_start_never_gets_traffic(cloud: Cloud, runtime: Runtime, reporter) -> None:
    first = _up(cloud, reporter)
    main = cloud.root / "app" / "main.py"
    main.write_text(main.read_text() + '\nraise RuntimeError("the app cannot start: no config")\n')
    with pytest.raises(StageFailed) as failed:
        _up(cloud, reporter)
    assert failed.value.stage == "deploy", failed.value.message
    assert "RuntimeError: the app cannot start: no config" in failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert cloud.run.tags(SERVICE).get("candidate", first.revisions["api"]) == first.revisions["api"]
    crashed = [i for name, i in runtime.instances.items() if not name.endswith(first.revisions["api"])]
    assert len(crashed) == 1 and not crashed[0].process.is_running()
    assert _get(cloud, "/api/notes") == (200, "[]")  # the serving revision still answers


def test_a_broken_migration_fails_the_release_at_migrate(cloud: Cloud, runtime: Runtime, reporter) -> None:
    first = _up(cloud, reporter)
    (cloud.root / "app" / "migrations" / "versions" / "0003_broken.py").write_text(
        '"""Backfill a column of a table that does not exist."""\n\nfrom alembic import op\n\n'
        'revision = "0003"\ndown_revision = "0002"\n\n\n'
        'def upgrade() -> None:\n    op.execute("UPDATE no_such_table SET done = true")\n\n\n'
        'def downgrade() -> None:\n    pass\n')
    hits = len(cloud.http.hits)
    with pytest.raises(StageFailed) as failed:
        _up(cloud, reporter)
    assert failed.value.stage == "migrate", failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert len(cloud.http.hits) == hits  # nothing was deployed, so nothing was smoke-tested
    broken = runtime.execution("staging-api-migrate")[-1]
    assert broken.state == "failed" and broken.attempts == 3  # the job's retries: 2, each a fresh process
    raised = 'sqlalchemy.exc.ProgrammingError: (psycopg.errors.UndefinedTable) relation "no_such_table" does not exist'
    assert raised in broken.log
    # Cloud Run keeps the output in the logs, not the status: the release quotes the exception line from the
    # execution's entries in Cloud Logging (the last attempt's; not the SQL or the docs URL printed after it)
    assert f"migration failed after 3 attempt(s): {raised}. Traffic stays on" in failed.value.message
    # and names the execution whose log holds the rest
    assert broken.name.rsplit("/", 1)[-1] in (failed.value.hint or "")
    assert runtime.sql[CONNECTION].query("SELECT version_num FROM alembic_version") == [("0002",)]


def test_rotating_the_database_password_keeps_the_real_app_answering(cloud: Cloud, runtime: Runtime,
                                                                     reporter) -> None:
    first = _up(cloud, reporter)
    sql = runtime.sql[CONNECTION]
    # docs/runbook.md, once per instance as postgres: the alternate login acts as the role
    sql.run_as_postgres(["GRANT app TO app_b", "ALTER ROLE app_b SET role = 'app'",
                         "INSERT INTO notes (title) VALUES ('kept through the rotation')"])
    answers: list[tuple[int, str]] = []
    done = threading.Event()

    def users() -> None:
        while not done.is_set():
            answers.append(_get(cloud, "/api/notes"))
            time.sleep(0.05)

    thread = threading.Thread(target=users)
    thread.start()
    try:
        rotated = rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
    finally:
        done.set()
        thread.join()
    assert rotated.outcome == "succeeded", rotated.message
    now = cloud.run.serving(SERVICE)
    assert list(now) != [first.revisions["api"]] and list(now.values()) == [100]
    failing = [a for a in answers if a[0] != 200 or "kept through the rotation" not in a[1]]
    assert answers and not failing, failing[:3]
    status, body = _get(cloud, "/api/notes")
    assert status == 200 and json.loads(body)[0]["title"] == "kept through the rotation"
    # the new revision logs in as the other login; the old one's password no longer opens anything
    logins = {row[0] for row in sql.query("SELECT usename FROM pg_stat_activity WHERE datname = 'app'")}
    assert "app_b" in logins
    passwords = {v: data.decode() for v, (_, data) in secret_values("example-staging", "staging-DB_PASSWORD").items()}
    assert sql.db.refusal("app_b", passwords["2"]) is None
    assert sql.db.refusal("app", passwords["1"]) == "password authentication failed"  # scrambled after the switch


def test_an_image_no_build_pushed_has_nothing_to_run(cloud: Cloud, runtime: Runtime, reporter) -> None:
    with pytest.raises(StageFailed) as failed:  # `deployctl up --image` with a digest the registry never held
        orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    missing = f"Image '{IMAGE}' not found."
    assert failed.value.stage == "migrate" and missing in failed.value.message
    assert not runtime.execution("staging-api-migrate")[-1].logs  # no task ever started
    # no revision was made: the candidates come after the migrations; nothing serves
    assert cloud.run.revisions == {} and runtime.instances == {} and SERVICE not in cloud.run.services


def test_a_rotation_to_a_login_that_cannot_read_the_tables_never_gets_traffic(cloud: Cloud, runtime: Runtime,
                                                                             reporter) -> None:
    """Without the runbook's GRANT app TO app_b, the second login cannot read the app's tables: the sample's
    readiness reads one (/startup), so the rotation's candidate never becomes ready, the rotation fails and
    the serving login keeps serving."""
    first = _up(cloud, reporter)
    runtime.sql[CONNECTION].run_as_postgres(["INSERT INTO notes (title) VALUES ('a note')"])  # no runbook step
    with pytest.raises(StageFailed) as failed:
        rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
    assert failed.value.stage == "deploy"
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert _get(cloud, "/api/notes")[0] == 200
