"""Smoke checks against a real HTTP server: the method and headers are sent, the status, body text and JSON
key/values are checked, and a failure names the key, never a value that came back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployctl.config import SmokeCheck
from deployctl.pipeline.smoke import json_mismatch, run_checks, summary
from tests.fakes.serving import serve_in_thread


class _App(BaseHTTPRequestHandler):
    """/health answers JSON; /echo answers 201 only to a POST that carries x-token: t0k3n."""

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"status": "ok", "db": {"ok": True, "password": "s3cret"}, "extra": 1})
        elif self.path == "/text":
            self._send(200, "plain", "text/plain")
        else:
            self._send(404, {"detail": "nope"})

    def do_POST(self) -> None:
        ok = self.path == "/echo" and self.headers.get("x-token") == "t0k3n"
        self._send(201 if ok else 400, {"created": ok})

    def _send(self, code: int, body: object, kind: str = "application/json") -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _check(**kw: object) -> SmokeCheck:
    return SmokeCheck.model_validate(kw)


def test_method_headers_and_json_pass(url: str) -> None:
    checks = [_check(path="/health", json={"status": "ok", "db": {"ok": True}}),
              _check(path="/echo", method="POST", headers={"X-Token": "t0k3n"}, expect_status=201,
                     json={"created": True})]
    results = run_checks(url, checks, attempts=1)
    assert [(r.path, r.ok, r.detail) for r in results] == [("/health", True, "HTTP 200"),
                                                           ("POST /echo", True, "HTTP 201")]


@pytest.mark.parametrize(("check", "detail"), [
    ({"path": "/health", "json": {"status": "degraded"}}, "/health: JSON status is not 'degraded'"),
    ({"path": "/health", "json": {"db": {"ok": False}}}, "/health: JSON db.ok is not False"),
    ({"path": "/health", "json": {"version": "1"}}, "/health: JSON lacks version"),
    ({"path": "/health", "json": {"status": {"nested": 1}}}, "/health: JSON status is not an object"),
    ({"path": "/text", "json": {"status": "ok"}}, "/text: the body is not JSON"),
    ({"path": "/echo", "method": "POST", "expect_status": 201}, "POST /echo: HTTP 400, expected 201"),
    ({"path": "/health", "method": "DELETE"}, "DELETE /health: HTTP 501, expected 200"),
])
def test_a_failure_says_which_check_and_key(url: str, check: dict, detail: str) -> None:  # type: ignore[type-arg]
    results = run_checks(url, [_check(**check)], attempts=1)
    assert summary(results) == detail
    assert "s3cret" not in detail


def test_json_match_is_a_subset_match() -> None:
    assert json_mismatch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}}) is None
    assert json_mismatch([1, 2], {"a": 1}) == "body is not an object"
