"""Fake Cloud SQL Admin API (sqladmin v1 REST, the part deployctl uses): users.update and operations.get.

Driven through the real discovery client (googleapiclient) pointed at this server. Users hold their
current password; an update answers with an operation that is RUNNING on the first get and DONE on the
next. Faults are queued per method ("update", "get"): ``"unavailable"`` (503), ``"busy"`` (409, another
operation in progress), ``"lost"`` (the password is set, then 504 comes back). ``on_change`` is called
after every password change, so a test can check an invariant at each step of a rotation. The log of
mutations names the user, never the password.

With a :class:`tests.fakes.iam.Project` set (``sql.project``), each request is checked against it first
(the ``Authorization`` header's principal, sqladmin.googleapis.com enabled, and the permission the Cloud SQL
Admin API reference names: users.update needs ``cloudsql.users.update``, operations.get
``cloudsql.instances.get``). Cloud SQL Admin refuses a principal without the permission with 403 reason
``notAuthorized``, "The client is not authorized to make this request." (Cloud SQL Admin API v1 errors).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.grpcfake import Faults
from tests.fakes.serving import serve_in_thread

if TYPE_CHECKING:
    from tests.fakes.iam import Project

_USERS = re.compile(r"/v1/projects/(?P<project>[^/]+)/instances/(?P<instance>[^/]+)/users")
_OPERATION = re.compile(r"/v1/projects/(?P<project>[^/]+)/operations/(?P<op>[^/]+)")
_FAULTS = {"unavailable": (503, "backendError"), "busy": (409, "operationInProgress")}


class FakeSqlAdmin:
    def __init__(self) -> None:
        self.users: dict[tuple[str, str], str] = {}  # (instance, user) -> password
        self.operations: dict[str, int] = {}  # name -> gets so far
        self.faults = Faults()
        self.calls: list[tuple[str, str]] = []  # ("users.update", "instance/user") that got through
        self.on_change: Callable[[str, str], None] = lambda instance, user: None
        self.project: Project | None = None  # when set, every request is checked against it
        # (instance, user, password) after a user is made or its password set: the twin's runtime applies it
        # to the Postgres that stands in for the instance (runtime.py)
        self.applied: Callable[[str, str, str], None] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                fake._handle(self, "update")

            def do_GET(self) -> None:
                fake._handle(self, "get")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve_in_thread(self._server)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def create_user(self, instance: str, user: str, password: str) -> None:
        with self._lock:
            made = (instance, user) not in self.users
            self.users.setdefault((instance, user), password)
        if made and self.applied is not None:
            self.applied(instance, user, password)

    def has_user(self, instance: str, user: str) -> bool:
        with self._lock:
            return (instance, user) in self.users

    def accepts(self, instance: str, user: str, password: str) -> bool:
        """Would a connection as this user with this password succeed?"""
        with self._lock:
            return self.users.get((instance, user)) == password

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        fault = self.faults.next(method)
        if fault in _FAULTS:
            return _send(request, *_error(*_FAULTS[fault]))
        url = urlsplit(request.path)
        refused = self._refused(request, method, url.path)
        if refused is not None:
            return _send(request, *refused)
        if method == "update" and (match := _USERS.fullmatch(url.path)):
            length = int(request.headers.get("content-length", 0))
            body = json.loads(request.rfile.read(length) or b"{}")
            status, reply = self._update(match["instance"], parse_qs(url.query).get("name", [""])[0], body)
        elif method == "get" and (match := _OPERATION.fullmatch(url.path)):
            status, reply = self._get(match["op"])
        else:
            status, reply = _error(404, "notFound")
        if fault == "lost" and status == 200:
            status, reply = _error(504, "deadlineExceeded")
        _send(request, status, reply)

    def _refused(self, request: BaseHTTPRequestHandler, method: str, path: str) -> tuple[int, dict[str, Any]] | None:
        if self.project is None:
            return None
        users, operation = _USERS.fullmatch(path), _OPERATION.fullmatch(path)
        if method == "update" and users:
            checks = [("cloudsql.users.update", f"projects/{users['project']}/instances/{users['instance']}")]
        elif method == "get" and operation:
            checks = [("cloudsql.instances.get", f"projects/{operation['project']}")]
        else:
            return None  # no such method: 404 below
        name = "sql.users.update" if users else "sql.operations.get"
        denial = self.project.authorize("sqladmin.googleapis.com", name, checks, request.headers.get("authorization"))
        if denial is None:
            return None
        if denial.reason != "IAM_PERMISSION_DENIED":
            return denial.http_status, denial.rest_body()
        return _error(403, "notAuthorized")

    def _update(self, instance: str, user: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if (instance, user) not in self.users:
                return _error(404, "notFound")
            self.users[(instance, user)] = str(body["password"])
            name = f"op-{next(self._ids)}"
            self.operations[name] = 0
            self.calls.append(("users.update", f"{instance}/{user}"))
        if self.applied is not None:
            self.applied(instance, user, str(body["password"]))
        self.on_change(instance, user)
        return 200, {"kind": "sql#operation", "name": name, "status": "PENDING", "operationType": "UPDATE_USER"}

    def _get(self, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if name not in self.operations:
                return _error(404, "notFound")
            self.operations[name] += 1
            status = "RUNNING" if self.operations[name] == 1 else "DONE"
        return 200, {"kind": "sql#operation", "name": name, "status": status}


def _error(status: int, reason: str) -> tuple[int, dict[str, Any]]:
    message = {409: "Operation failed because another operation was already in progress.",
               403: "The client is not authorized to make this request."}.get(status, reason)
    return status, {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}


def _send(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    request.send_header("content-type", "application/json")
    request.send_header("content-length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
