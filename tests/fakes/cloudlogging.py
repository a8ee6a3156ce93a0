"""Fake Cloud Logging: ``entries:list`` (Logging API v2 REST) over the output of the fake Cloud Run's job executions.

Served through drongo's HTTP interception (registered by :func:`tests.fakes.drongo_ext.install`), so a
``google.auth.transport.requests.AuthorizedSession`` posting to ``https://logging.googleapis.com`` reaches it, with
drongo_ext's fault injection (``RECORDER.faults``, handler ``list_entries``) and the project checks of every drongo
service (:class:`tests.fakes.drongo_ext.FaultMixin`).

What is logged (the entries Cloud Run would have written):

- A job execution's container output: what the runtime's process wrote (tests/fakes/runtime.py, every attempt's
  log, oldest first) or, for a scripted execution, the text a test gave its job (``drongo_ext.JOBS.output``).
  Cloud Run sends what a container writes to stdout and stderr to Cloud Logging (Cloud Run "Logging and viewing
  logs", "Writing container logs"). Each entry has ``resource.type`` ``cloud_run_job`` with the labels
  ``project_id``, ``job_name`` and ``location`` (the monitored resource ``gcloud run jobs logs read`` filters on),
  the labels ``run.googleapis.com/execution_name``, ``run.googleapis.com/task_index`` and
  ``run.googleapis.com/task_attempt`` (Cloud Run "Logging and viewing logs": a job execution's logs), and the log
  ``projects/P/logs/run.googleapis.com%2Fstderr``. The runtime keeps one merged log per attempt, so the twin cannot
  tell the two streams apart and files every line under stderr (Python's tracebacks and logging go there).
- A line that is a JSON object becomes a structured entry: ``jsonPayload`` with its ``severity`` moved to the
  entry's; any other line a ``textPayload`` with severity ``DEFAULT`` (Cloud Logging "Structured logging", special
  JSON fields; Cloud Run functions "Writing runtime logs": output without a level has none). How Cloud Run cuts
  the stream into entries is not documented further, and real entries are seen either way (one per line, or a
  whole traceback in one multi-line ``textPayload``, the shape Error Reporting "Format errors in logs" reads): the
  twin makes one entry per line, and a test may also give a scripted execution whole entries (a list of texts).
- Entry timestamps follow the output's order, from the execution's start on, and ``insertId`` is unique.

``entries:list`` (Logging API v2 reference, "Method: entries.list"):

- needs ``logging.logEntries.list`` on each of ``resourceNames`` ("Authorization requires … the following IAM
  permissions on the specified resource"), with logging.googleapis.com enabled (tests/fakes/apis.py: it is one of
  the APIs a new project has). Private logs (Data Access audit logs) would also need
  ``logging.privateLogEntries.list``; the twin writes none.
- ``resourceNames`` is required (``projects/P`` here); ``orderBy`` is ``timestamp asc`` (the default) or
  ``timestamp desc``, entries with equal timestamps in ``insertId`` order; ``pageSize`` defaults to 50 and a value
  that is negative or above 1000 is rejected; ``nextPageToken`` is set while more entries match. Anything else is
  400 INVALID_ARGUMENT, as is a filter the twin cannot parse.
- ``filter`` is the Logging query language ("Logging query language"): comparisons ``FIELD OP VALUE`` with
  ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` and ``:`` (has), joined by ``AND``, ``OR``, ``NOT`` and
  parentheses, with an implicit AND between adjacent comparisons; NOT binds tightest, then OR, then AND. A field
  an entry lacks matches no comparison. ``timestamp`` compares as a time, ``severity`` by level.
- Entries may arrive late: Cloud Logging's own live tail buffers entries "to prevent out of order results due to
  late arriving log entries" (2 seconds by default; Logging API v2, TailLogEntriesRequest.buffer_window). A test
  sets ``LOGS.late_reads`` to make that many reads find nothing yet, or ``LOGS.arrived`` to make each next read
  find only that many of the matching entries, the oldest (the first lines of a failing job, its traceback still
  on its way).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from drongo.core.registry import ServiceDefinition, register_service
from drongo.core.responses import BaseResponse, HttpResponse, Request, json_response
from drongo.services.logging.models import logging_backends

from tests.fakes import drongo_ext
from tests.fakes.drongo_ext import FaultMixin, Rules

STDERR = "run.googleapis.com%2Fstderr"
_SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")


@dataclass
class LogState:
    late_reads: int = 0  # entries:list calls that find nothing yet (entries still on their way)
    arrived: list[int] = field(default_factory=list)  # per next entries:list call: how many entries, oldest first
    requests: list[dict[str, Any]] = field(default_factory=list)  # the bodies entries:list was sent


LOGS = LogState()


def reset() -> None:
    global LOGS
    LOGS.__init__()  # type: ignore[misc]


# -- what Cloud Run wrote ---------------------------------------------------------------------------------


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _outputs() -> list[tuple[str, datetime, list[list[str]]]]:
    """(execution name, start, [entry payloads per attempt]) of every execution that wrote output."""
    found = []
    for name, (created, said) in drongo_ext.JOBS.logged.items():
        payloads = said.splitlines() if isinstance(said, str) else list(said)
        found.append((name, _time(created), [payloads]))
    runtime = drongo_ext.JOBS.runtime
    if runtime is not None:
        for name, run in list(runtime.executions.items()):
            attempts = [p.read_text(errors="replace").splitlines() if p.is_file() else [] for p in list(run.logs)]
            found.append((name, run.started, attempts))
    return found


def entries() -> list[dict[str, Any]]:
    """Every entry the fake Cloud Run's executions wrote so far."""
    written = []
    for name, start, attempts in _outputs():
        _, project, _, location, _, job, _, short = name.split("/")
        n = 0
        for attempt, payloads in enumerate(attempts):
            for payload in payloads:
                if not payload.strip():
                    continue
                n += 1
                entry: dict[str, Any] = {
                    "insertId": f"{short}-{n:08d}",
                    "logName": f"projects/{project}/logs/{STDERR}",
                    "resource": {"type": "cloud_run_job",
                                 "labels": {"project_id": project, "job_name": job, "location": location}},
                    "labels": {"run.googleapis.com/execution_name": short, "run.googleapis.com/task_index": "0",
                               "run.googleapis.com/task_attempt": str(attempt)},
                    "timestamp": _stamp(start + timedelta(microseconds=n)),
                    "severity": "DEFAULT",
                }
                entry["receiveTimestamp"] = entry["timestamp"]
                structured = _json_object(payload)
                if structured is None:
                    entry["textPayload"] = payload
                else:
                    severity = str(structured.pop("severity", "DEFAULT")).upper()
                    entry["severity"] = severity if severity in _SEVERITIES else "DEFAULT"
                    entry["jsonPayload"] = structured
                written.append(entry)
    return written


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- the Logging query language (the part the twin reads) ------------------------------------------------


class FilterError(ValueError):
    pass


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op><=|>=|!=|=|<|>|:)|(?P<paren>[()])'
                    r'|(?P<word>[^\s()"=<>!:]+))')


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"unexpected text at {text[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        out.append((kind, json.loads(value) if kind == "str" else value))
        pos = match.end()
    return out


Node = Any  # ("and"|"or", [nodes]) | ("not", node) | ("cmp", path, op, value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("the filter ends too soon")
        self.i += 1
        return token

    def parse(self) -> Node:
        node = self.conjunction()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def conjunction(self) -> Node:  # AND binds loosest; adjacent terms are ANDed
        terms = [self.disjunction()]
        while (token := self.peek()) is not None and token != ("paren", ")"):
            if token == ("word", "AND"):
                self.take()
            terms.append(self.disjunction())
        return ("and", terms)

    def disjunction(self) -> Node:
        terms = [self.negation()]
        while self.peek() == ("word", "OR"):
            self.take()
            terms.append(self.negation())
        return ("or", terms)

    def negation(self) -> Node:
        if self.peek() == ("word", "NOT"):
            self.take()
            return ("not", self.negation())
        if self.peek() == ("paren", "("):
            self.take()
            inner = self.conjunction()
            if self.take() != ("paren", ")"):
                raise FilterError("a parenthesis is not closed")
            return inner
        return self.comparison()

    def comparison(self) -> Node:
        kind, first = self.take()
        if kind != "word":
            raise FilterError(f"expected a field, found {first!r}")
        path = first.split(".")
        while path[-1] == "" and self.peek() is not None and self.peek()[0] == "str":  # type: ignore[index]
            path[-1] = self.take()[1]  # labels."run.googleapis.com/execution_name"
            if self.peek() is not None and self.peek()[0] == "word" and self.peek()[1].startswith("."):  # type: ignore[index]
                path += self.take()[1][1:].split(".")
        kind, op = self.take()
        if kind != "op":
            raise FilterError(f"expected a comparison after {first!r}")
        kind, value = self.take()
        if kind not in ("str", "word"):
            raise FilterError(f"expected a value after {op!r}")
        return ("cmp", path, op, value)


def parse(text: str) -> Node:
    return _Parser(text).parse() if text.strip() else ("and", [])


def matches(node: Node, entry: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "and":
        return all(matches(n, entry) for n in node[1])
    if kind == "or":
        return any(matches(n, entry) for n in node[1])
    if kind == "not":
        return not matches(node[1], entry)
    _, path, op, value = node
    found: Any = entry
    for part in path:
        if not isinstance(found, dict) or part not in found:
            return False
        found = found[part]
    return _compare(path, op, json.dumps(found) if isinstance(found, dict | list) else found, value)


def _compare(path: list[str], op: str, found: Any, value: str) -> bool:
    if op == ":":
        return str(value).lower() in str(found).lower()
    left: Any
    right: Any
    if path == ["timestamp"]:
        try:
            left, right = _time(str(found)), _time(str(value))
        except ValueError as exc:
            raise FilterError(f"not a timestamp: {value!r}") from exc
    elif path == ["severity"]:
        if str(value).upper() not in _SEVERITIES:
            raise FilterError(f"not a severity: {value!r}")
        left, right = _SEVERITIES.index(str(found)), _SEVERITIES.index(str(value).upper())
    else:
        left, right = str(found), str(value)
    return {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right, ">": left > right,
            ">=": left >= right}[op]


# -- entries:list -----------------------------------------------------------------------------------------


def _resources(request: Request) -> list[str]:
    try:
        names = (request.json() or {}).get("resourceNames") or []
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def _invalid(message: str) -> HttpResponse:
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    return 400, {"Content-Type": "application/json"}, json.dumps(body)


class EntriesResponse(FaultMixin, BaseResponse):
    # Logging API v2, "Method: entries.list": logging.logEntries.list on each resource listed
    API = "logging.googleapis.com"
    READS = frozenset({"list_entries"})  # a POST that changes nothing: not a mutation
    RULES: ClassVar[Rules] = {
        "list_entries": lambda request: [("logging.logEntries.list", name) for name in _resources(request)],
    }

    def list_entries(self, request: Request) -> HttpResponse:
        try:
            body = request.json() or {}
        except ValueError:
            return _invalid("Invalid JSON payload received.")
        LOGS.requests.append(body)
        resources = body.get("resourceNames") or []
        if not resources or any(not re.fullmatch(r"projects/[^/]+", str(r)) for r in resources):
            return _invalid("resourceNames: one or more projects/[PROJECT_ID] are required (the twin has no others)")
        order = body.get("orderBy") or "timestamp asc"
        if order not in ("timestamp asc", "timestamp desc"):
            return _invalid(f"Invalid orderBy: {order!r}")
        size = int(body.get("pageSize") or 50)
        if size < 0 or size > 1000:
            return _invalid(f"pageSize {size} is out of range [0, 1000]")
        token = str(body.get("pageToken") or "0")
        if not token.isdigit():
            return _invalid(f"Invalid page token: {token!r}")
        start = int(token)
        projects = {str(r).split("/")[1] for r in resources}
        try:
            query = parse(str(body.get("filter") or ""))
            found = [e for e in entries() if e["resource"]["labels"]["project_id"] in projects and matches(query, e)]
        except FilterError as exc:
            return _invalid(f"Unparseable filter: {exc}")
        found = _arrived(sorted(found, key=lambda e: (_time(e["timestamp"]), e["insertId"])))
        if order == "timestamp desc":
            found.reverse()
        page = found[start:start + size]
        answer: dict[str, Any] = {"entries": page} if page else {}
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return json_response(answer)


def _arrived(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of the matching entries, oldest first, those that have reached Cloud Logging (see ``LOGS.late_reads``,
    ``LOGS.arrived``)."""
    if LOGS.late_reads > 0:
        LOGS.late_reads -= 1
        return []
    return found[:LOGS.arrived.pop(0)] if LOGS.arrived else found


def register() -> None:
    """Serve ``https://logging.googleapis.com/v2/entries:list`` through drongo's interception (drongo's own Cloud
    Logging is a gRPC emulator without this REST method; its registration is left as it is)."""
    register_service(
        ServiceDefinition(
            name="logging-entries",
            backends=logging_backends,
            response=EntriesResponse([r"https?://logging\.googleapis\.com"],
                                     {"POST /v2/entries:list": EntriesResponse.list_entries}),
        )
    )
