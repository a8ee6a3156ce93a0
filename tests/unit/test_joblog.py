"""Which line of a failed process's output explains it (deployctl.joblog): the local target quotes it from a
process's log, the gcp target from a Cloud Run execution's entries in Cloud Logging."""

from __future__ import annotations

import pytest

from deployctl.joblog import cut_short, explain

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


@pytest.mark.parametrize(("output", "short"), [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    main()\n", True),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: no\n", False),
    ("INFO running\n", False),
    ("", False),
])
def test_output_cut_inside_a_traceback_is_short(output: str, short: bool) -> None:
    assert cut_short(output) is short
