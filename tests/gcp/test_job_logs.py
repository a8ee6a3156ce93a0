"""A failed migrate job on gcp says why, as on the local target: the exception line of its output, read from the
execution's entries in Cloud Logging (deployctl/targets/gcp/run_logs.py, the fake in tests/fakes/cloudlogging.py).
When the entries cannot be read, the release fails exactly as before, with Cloud Run's message and the log link."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from deployctl.errors import DeployctlError, StageFailed
from deployctl.pipeline import orchestrator
from deployctl.targets.gcp.retry import RetryPolicy
from deployctl.targets.gcp.run_jobs import SECRETS_S, CloudRunJobs
from deployctl.targets.gcp.run_logs import BUDGET_S, ExecutionLogs
from deployctl.targets.gcp.secrets import SecretManager
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


class _Session:
    """entries:list answered with *output* as one entry. It keeps the deadline's clock, which its calls (each
    taking *takes_s*) and the waits advance: the test's own time plays no part."""

    def __init__(self, takes_s: float, output: str) -> None:
        self.now, self.takes_s, self.output = 0.0, takes_s, output
        self.limits: list[tuple[float, float]] = []  # (timeout, max_allowed_time) of each call

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def post(self, url: str, json: object, timeout: float, max_allowed_time: float) -> SimpleNamespace:
        self.limits.append((timeout, max_allowed_time))
        self.now += self.takes_s
        return SimpleNamespace(status_code=200, json=lambda: {"entries": [{"textPayload": self.output}]})


FIRST_LINE = OUTPUT.splitlines()[0]  # says nothing of why: read again


@pytest.mark.parametrize(("takes_s", "limits"), [
    (0.0, [10.0, 9.0, 8.0]),  # fast answers: the two re-reads, each given what remains after the waits
    (4.0, [10.0, 5.0]),  # slow ones: after 4 + 1 + 4 s no wait is made that leaves no time to read again
    (10.0, [10.0]),
])
def test_the_log_read_has_one_deadline_for_every_call_and_wait(takes_s: float, limits: list[float]) -> None:
    session = _Session(takes_s, FIRST_LINE)
    logs = ExecutionLogs(session, "example-staging", "europe-west1", clock=session.clock)
    assert logs.output(MIGRATE, "staging-api-migrate-x", wait_s=1.0, sleep=session.sleep) == FIRST_LINE
    assert session.limits == [(limit, limit) for limit in limits]
    assert session.now <= BUDGET_S


def test_the_secret_values_are_read_within_what_remains() -> None:
    """Quoting a failed execution's line takes at most the log read's budget and SECRETS_S: the values are read
    within what the log read left of both, and not at all when there is nothing to quote."""
    asked: list[float] = []

    def values(within_s: float) -> list[str]:
        asked.append(within_s)
        return ["s3cr3t-value"]

    execution = SimpleNamespace(name="projects/p/locations/r/jobs/j/executions/j-x", create_time=None)
    for output, said in ((f"{OUTPUT}s3cr3t-value\n", RAISED), (FIRST_LINE, "")):
        session = _Session(7.0, output)
        logs = ExecutionLogs(session, "p", "r", clock=session.clock)
        jobs = CloudRunJobs(None, None, "p", "r", RetryPolicy(), poll_s=1.0, logs=logs)
        assert jobs._said("j", execution, session.sleep, values) == said
        assert session.now <= BUDGET_S + SECRETS_S
    assert asked == [BUDGET_S + SECRETS_S - 7.0]


def test_secret_manager_within_a_deadline_gives_each_call_what_remains_and_waits_out_no_grant() -> None:
    from google.api_core import exceptions as gexc

    class Client:
        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def access_secret_version(self, name: str, retry: object, timeout: float) -> SimpleNamespace:
            self.timeouts.append(timeout)
            if len(self.timeouts) == 1:
                raise gexc.PermissionDenied("not yet")  # a grant still propagating would be waited out
            return SimpleNamespace(payload=SimpleNamespace(data=b"value"))

    policy = RetryPolicy(initial_s=0.01)
    policy.propagation.begin("the grants", 60.0)
    client = Client()
    secrets = SecretManager(client, "p", policy, prefix="staging-")
    with pytest.raises(DeployctlError):
        secrets.within(3.0).value("DATABASE_URL", "1")
    assert client.timeouts == [3.0]
    assert secrets.value("DATABASE_URL", "1") == "value"  # the stage's own reads still wait it out
    assert client.timeouts == [3.0, policy.call_timeout_s]
