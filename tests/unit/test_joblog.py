"""Which line of a failed process's output explains it (deployctl.joblog): the local target quotes it from a
process's log, the gcp target from a Cloud Run execution's entries in Cloud Logging."""

from __future__ import annotations

import pytest

from deployctl.joblog import cut_short, explain, quote, redact

SQLALCHEMY_FAILURE = """\
INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/psycopg/connection.py", line 119, in connect
    raise last_ex.with_traceback(None)
psycopg.OperationalError: connection failed: connection to server at "127.0.0.1", port 5432 failed

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/venv/bin/alembic", line 8, in <module>
    sys.exit(main())
sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: server at "127.0.0.1" failed
\tIs the server running on that host and accepting TCP/IP connections?
(Background on this error at: https://sqlalche.me/e/20/e3q8)
"""


@pytest.mark.parametrize(("output", "line"), [
    (SQLALCHEMY_FAILURE, 'sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: server at '
                         '"127.0.0.1" failed'),
    ("Collecting x\nERROR: Could not find a version that satisfies the requirement x==1\n"
     "ERROR: No matching distribution found for x==1\n", "ERROR: No matching distribution found for x==1"),
    ("starting\nerror: the lockfile is broken\ncleaning up\n", "error: the lockfile is broken"),
    ("migration 0002 failed: relation notes does not exist\n", "migration 0002 failed: relation notes does not exist"),
    ("", ""),
])
def test_explain_quotes_the_line_that_says_why(output: str, line: str) -> None:
    assert explain(output) == line



@pytest.mark.parametrize(("output", "line"), [
    ("INFO  [alembic.runtime.migration] Running upgrade 0002 -> 0003\n", ""),  # it merely came last
    ("starting\nerror: the lockfile is broken\ncleaning up\n", "error: the lockfile is broken"),
    (SQLALCHEMY_FAILURE, 'sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: server at '
                         '"127.0.0.1" failed'),
    ("", ""),
])
def test_strict_explain_quotes_only_a_line_that_says_why(output: str, line: str) -> None:
    assert explain(output, strict=True) == line
    assert quote(output, [], strict=True) == line

@pytest.mark.parametrize(("output", "short"), [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    main()\n", True),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: no\n", False),
    ("INFO running\n", False),
    ("", False),
])
def test_output_cut_inside_a_traceback_is_short(output: str, short: bool) -> None:
    assert cut_short(output) is short


SECRET = "postgresql://app:s3cr3t-Pa55w0rd-9f8e7d6c@db.internal:5432/app"


def _straddling(secret: str, column: int = 300) -> str:
    """A failed job's output whose explaining line holds *secret* across *column*: its middle is at the cut."""
    head = "sqlalchemy.exc.ArgumentError: Could not parse SQLAlchemy URL from string "
    line = head + "." * (column - len(head) - len(secret) // 2) + secret + " (given by DATABASE_URL)"
    assert line.index(secret) < column < line.index(secret) + len(secret)
    return f"INFO  [alembic] Context impl PostgresqlImpl.\nTraceback (most recent call last):\n  File \"x\"\n{line}\n"


def _prefixes(secret: str) -> list[str]:
    return [secret[:n] for n in range(4, len(secret) + 1)]


@pytest.mark.parametrize("column", [298, 300, 302])
def test_a_secret_cut_by_the_quoted_lines_end_is_taken_out_whole(column: int) -> None:
    """The line is cut to 300 characters; a value straddling the cut must not leave its beginning behind."""
    said = quote(_straddling(SECRET, column), [SECRET])
    assert said.startswith("sqlalchemy.exc.ArgumentError: Could not parse") and "****" in said
    assert not [p for p in _prefixes(SECRET) if p in said]
    # what the targets did before: pick and cut the line, then redact it, leaves the beginning
    assert [p for p in _prefixes(SECRET) if p in redact(explain(_straddling(SECRET, column)), [SECRET])]
