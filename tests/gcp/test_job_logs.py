"""A failed migrate job on gcp says why, as on the local target: the exception line of its output, read from the
execution's entries in Cloud Logging (deployctl/targets/gcp/run_logs.py, the fake in tests/fakes/cloudlogging.py).
When the entries cannot be read, the release fails exactly as before, with Cloud Run's message and the log link."""

from __future__ import annotations

import json

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator
from tests.fakes import cloudlogging, drongo_ext
from tests.fakes.iam import TwinCredentials
from tests.gcp.conftest import IMAGE, IMAGE2, SERVICE, Cloud

MIGRATE = "staging-api-migrate"
RAISED = 'psycopg.errors.UndefinedTable: relation "x" does not exist'
OUTPUT = f"""\
INFO  [alembic.runtime.migration] Running upgrade 0002 -> 0003, backfill x
Traceback (most recent call last):
  File "/app/.venv/bin/alembic", line 8, in <module>
    sys.exit(main())
  File "/app/migrations/versions/0003_backfill.py", line 12, in upgrade
    op.execute("UPDATE x SET done = true")
{RAISED}
LINE 1: UPDATE x SET done = true
               ^
"""
DEV = "user:dev@example.com"  # holds no role: may not read the project's logs


def _up(cloud: Cloud, reporter, image: str = IMAGE, **kw):
    return orchestrator.release(cloud.target(**kw), cloud.options(image), reporter)


def _quoted(failed: StageFailed) -> str:
    """What the release's error says of the job: "… migration failed after N attempt(s): <this>. Traffic stays …"."""
    return failed.message.split(" attempt(s): ", 1)[1].rsplit(". Traffic stays on ", 1)[0]


def _fail_migration(cloud: Cloud, reporter, *outputs: str | list[str], **kw) -> StageFailed:
    drongo_ext.JOBS.outcomes[MIGRATE] = [False]
    drongo_ext.JOBS.output[MIGRATE] = list(outputs)
    with pytest.raises(StageFailed) as failed:
        _up(cloud, reporter, IMAGE2, **kw)
    assert failed.value.stage == "migrate", failed.value.message
    return failed.value


def test_a_failed_migration_quotes_the_exception_line_of_its_output(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    failed = _fail_migration(cloud, reporter, OUTPUT)
    assert _quoted(failed) == RAISED  # not the caret under it, not the last line
    assert "console.cloud.google.com" in (failed.hint or "")  # the log link, as before
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    # what was asked: this execution's container output, newest first, from its creation on
    asked = cloudlogging.LOGS.requests[-1]
    execution = next(n for n, failed in drongo_ext.JOBS.failed.items() if failed).rsplit("/", 1)[-1]
    assert asked["resourceNames"] == ["projects/example-staging"] and asked["orderBy"] == "timestamp desc"
    assert f'labels."run.googleapis.com/execution_name"="{execution}"' in asked["filter"]
    assert 'resource.labels.job_name="staging-api-migrate"' in asked["filter"] and "timestamp>=" in asked["filter"]
    assert not [c for c in cloud.mutations() if "entries" in c[1]]  # a read, not a change


def test_whole_traceback_entries_and_structured_entries_read_as_the_output(cloud: Cloud, reporter) -> None:
    """Cloud Run may keep a traceback in one multi-line entry, and a JSON line is a jsonPayload whose message is
    the text: either way the output reads as the process wrote it."""
    _up(cloud, reporter)
    structured = json.dumps({"severity": "INFO", "message": "starting the backfill"})
    failed = _fail_migration(cloud, reporter, [structured, OUTPUT, "(Background on this error at: https://x/e)"])
    assert _quoted(failed) == RAISED


def test_another_executions_output_is_not_mixed_in(cloud: Cloud, reporter) -> None:
    _up(cloud, reporter)
    drongo_ext.JOBS.outcomes[MIGRATE] = [False, False]
    drongo_ext.JOBS.output[MIGRATE] = [OUTPUT, "INFO  [alembic] Running upgrade 0002 -> 0003\nKeyError: 'tenant'\n"]
    for _ in range(2):
        with pytest.raises(StageFailed) as failed:
            _up(cloud, reporter, IMAGE2)
    assert _quoted(failed.value) == "KeyError: 'tenant'"


def test_an_account_that_cannot_read_logs_fails_the_release_as_before(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    failed = _fail_migration(cloud, reporter, OUTPUT, log_credentials=TwinCredentials(DEV))
    assert _quoted(failed) == "Task failed"  # Cloud Run's own message
    assert "console.cloud.google.com" in (failed.hint or "") and "execution=staging-api-migrate-" in failed.hint
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert cloud.target().ledger.history()[0].outcome == "failed"
    assert cloud.project is not None
    method, denial = cloud.project.denials[-1]
    assert (method, denial.permission, denial.member) == ("logging.googleapis.com/list_entries",
                                                          "logging.logEntries.list", DEV)
    cloud.project.grant(DEV, "roles/logging.viewer", now=True)  # what bootstrap grants the release's account
    assert _quoted(_fail_migration(cloud, reporter, OUTPUT, log_credentials=TwinCredentials(DEV))) == RAISED


@pytest.mark.parametrize(("late", "quoted"), [(2, True), (3, False)])
def test_entries_that_arrive_late_are_waited_for_briefly(cloud: Cloud, reporter, late: int, quoted: bool) -> None:
    _up(cloud, reporter)
    before = len(cloudlogging.LOGS.requests)
    cloudlogging.LOGS.late_reads = late
    failed = _fail_migration(cloud, reporter, OUTPUT)
    assert _quoted(failed) == (RAISED if quoted else "Task failed")
    assert len(cloudlogging.LOGS.requests) - before == 3  # a first read and two more, never more



def test_output_whose_traceback_has_not_arrived_is_read_again(cloud: Cloud, reporter) -> None:
    """The first read finds only the migration's first line (``INFO … Running upgrade``), which says nothing of
    why: it is not quoted, and a later read finds the traceback."""
    _up(cloud, reporter)
    before = len(cloudlogging.LOGS.requests)
    cloudlogging.LOGS.arrived = [1]
    failed = _fail_migration(cloud, reporter, OUTPUT)
    assert _quoted(failed) == RAISED
    assert len(cloudlogging.LOGS.requests) - before == 2


def test_output_that_never_says_why_keeps_cloud_runs_message(cloud: Cloud, reporter) -> None:
    """When every read finds only lines that say nothing of why, Cloud Run's own message stays, not the INFO
    line that merely came last."""
    _up(cloud, reporter)
    before = len(cloudlogging.LOGS.requests)
    cloudlogging.LOGS.arrived = [1, 1, 1]
    failed = _fail_migration(cloud, reporter, OUTPUT)
    assert _quoted(failed) == "Task failed"
    assert len(cloudlogging.LOGS.requests) - before == 3  # a first read and two more, never more
    assert cloudlogging.LOGS.arrived == []

def test_a_logging_error_is_not_retried_and_changes_nothing(cloud: Cloud, reporter) -> None:
    _up(cloud, reporter)
    before = len(cloudlogging.LOGS.requests)
    drongo_ext.RECORDER.faults.add("list_entries", "unavailable")
    failed = _fail_migration(cloud, reporter, OUTPUT)
    assert _quoted(failed) == "Task failed"
    assert len(cloudlogging.LOGS.requests) == before  # the 503 came before the handler: one call, no retry


def test_secret_values_in_the_quoted_line_are_taken_out(cloud: Cloud, reporter) -> None:
    _up(cloud, reporter)
    url = drongo_ext.secret_values("example-staging", "staging-DATABASE_URL")["1"][1].decode()
    said = f"sqlalchemy.exc.ArgumentError: Could not parse SQLAlchemy URL from string '{url}'"
    failed = _fail_migration(cloud, reporter, f"Traceback (most recent call last):\n  File \"x\"\n{said}\n")
    assert url not in failed.message
    assert _quoted(failed) == "sqlalchemy.exc.ArgumentError: Could not parse SQLAlchemy URL from string '****'"


def test_a_secret_value_cut_by_the_quoted_lines_end_is_taken_out_whole(cloud: Cloud, reporter) -> None:
    """The quoted line is cut to 300 characters: the output is redacted before, so a value straddling the cut
    leaves no beginning behind, in the message or in the ledger."""
    _up(cloud, reporter)
    url = drongo_ext.secret_values("example-staging", "staging-DATABASE_URL")["1"][1].decode()
    head = "sqlalchemy.exc.ArgumentError: Could not parse SQLAlchemy URL from string "
    said = head + "." * (300 - len(head) - len(url) // 2) + url + "'"
    assert said.index(url) < 300 < said.index(url) + len(url)
    failed = _fail_migration(cloud, reporter, f"Traceback (most recent call last):\n  File \"x\"\n{said}\n")
    assert _quoted(failed).startswith(head) and "****" in _quoted(failed)
    record = repr(cloud.target().ledger.history()[0])
    assert _quoted(failed) in record
    assert not [url[:n] for n in range(4, len(url) + 1) if url[:n] in failed.message + record]
