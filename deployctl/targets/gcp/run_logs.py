"""Cloud Logging facade (Logging API v2 REST ``entries:list`` through an authorized ``requests`` session): the
output a Cloud Run job execution wrote, to say why it failed.

Rules:
- Only the execution's container output is read: entries of the monitored resource ``cloud_run_job`` of that job
  and region whose label ``run.googleapis.com/execution_name`` is the execution, in the logs Cloud Run writes a
  container's stdout and stderr to, from the execution's creation on (Cloud Run "Logging and viewing logs"; a
  time range makes the query faster, Logging API "Method: entries.list"). Another execution's output never mixes
  in; nor do the platform's own lines (``varlog/system``).
- One request: the newest entries, at most 1000 (the API's largest page), put back in time order. The end of the
  output is what explains a failure; a longer output loses its beginning.
- An entry is its ``textPayload``, or the ``message`` of a structured entry's ``jsonPayload``; one entry may hold
  several lines (a whole traceback) or one line each. Joined in order, they read as the process's output did.
- Entries reach Cloud Logging a little after they are written (Logging's own tail waits 2 s for "late arriving
  log entries"): a read whose output has no line that says why (nothing yet, only its first lines such as
  ``INFO Running upgrade …``, or output that stops inside a traceback) is read again after *wait_s*, at most
  twice. Never longer: the release has failed already and waits on nothing else.
- One deadline for all of it, *budget_s* (10 s) from the first call: each call is given what remains as its
  timeout and as its total time with the session's token refresh (AuthorizedSession ``max_allowed_time``), and a
  wait that would leave no time to read again is not made. (A ``requests`` timeout bounds each wait on the
  network, not a whole download: an answer that trickles in can overrun it by that much; one page of entries
  does not.)
- Best effort: a refusal (403 without ``logging.logEntries.list``, which ``roles/logging.viewer`` grants), another
  error, an answer that is not JSON or a timeout (the deadline above) returns None and the caller says what it
  said before. Nothing is retried and nothing raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from deployctl.joblog import cut_short, explain

ENDPOINT = "https://logging.googleapis.com"
PAGE = 1000  # entries.list: "If the value is negative or exceeds 1000, the request is rejected"
REREADS = 2
BUDGET_S = 10.0  # every call and wait of one read of an execution's output


class ExecutionLogs:
    def __init__(self, session: Any, project: str, region: str, budget_s: float = BUDGET_S,
                 endpoint: str = ENDPOINT, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session  # google.auth.transport.requests.AuthorizedSession (a requests.Session)
        self.project, self.region = project, region
        self.budget_s = budget_s
        self.clock = clock  # seconds, monotonic: the deadline's
        self.url = endpoint.rstrip("/") + "/v2/entries:list"

    def output(self, job_id: str, execution: str, since: datetime | None = None, wait_s: float = 1.0,
               sleep: Callable[[float], None] = time.sleep) -> str | None:
        """What execution *execution* (its short name) of job *job_id* wrote, oldest line first; None when it
        cannot be read. All of it within ``budget_s`` (see the rules)."""
        end = self.clock() + self.budget_s
        text = self._read(job_id, execution, since, self.budget_s)
        for _ in range(REREADS):
            if text is None or (explain(text, strict=True) and not cut_short(text)):
                break
            if self.clock() + wait_s >= end:  # no time left to read again
                break
            sleep(wait_s)
            left = end - self.clock()
            if left <= 0:
                break
            text = self._read(job_id, execution, since, left)
        return text

    def filter(self, job_id: str, execution: str, since: datetime | None) -> str:
        logs = " OR ".join(f'logName="projects/{self.project}/logs/run.googleapis.com%2F{stream}"'
                           for stream in ("stdout", "stderr"))
        terms = [
            'resource.type="cloud_run_job"',
            f'resource.labels.job_name="{job_id}"',
            f'resource.labels.location="{self.region}"',
            f'labels."run.googleapis.com/execution_name"="{execution}"',
            f"({logs})",
        ]
        if since is not None:
            terms.append(f'timestamp>="{since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"')
        return " AND ".join(terms)

    def _read(self, job_id: str, execution: str, since: datetime | None, left_s: float) -> str | None:
        body = {
            "resourceNames": [f"projects/{self.project}"],
            "filter": self.filter(job_id, execution, since),
            "orderBy": "timestamp desc",
            "pageSize": PAGE,
        }
        try:
            response = self.session.post(self.url, json=body, timeout=left_s, max_allowed_time=left_s)
            if response.status_code != 200:
                return None
            entries = response.json().get("entries") or []
        except Exception:  # the session's own errors (transport, auth refresh, JSON): best effort, see the rules
            return None
        return "\n".join(_text(entry) for entry in reversed(entries) if isinstance(entry, dict))


def _text(entry: dict[str, Any]) -> str:
    if "textPayload" in entry:
        return str(entry["textPayload"])
    payload = entry.get("jsonPayload")
    return str(payload.get("message", "")) if isinstance(payload, dict) else ""
