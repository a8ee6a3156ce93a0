"""The local router as deployctl starts it (its own process, on loopback) in front of a real ASGI backend under
uvicorn: it streams both ways, passes WebSockets through, sends the revision's headers once, names the revision
on every answer, and a traffic switch moves the next request while one in flight finishes where it began.

Each streaming test proves delivery with a handshake, not a sleep: the backend holds its response (or the
client holds its upload) until the other side says the first part arrived. A router that buffered would
never let that part through, and the test fails on its timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from deployctl.targets.local.fs import atomic_write

WAIT = 10  # seconds any handshake below may take on a loaded machine before the test fails


@dataclass
class Backend:
    """What the backend saw, and the signals a test gives it."""

    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)  # SSE: send the rest now
    stream_ended: threading.Event = field(default_factory=threading.Event)
    client_left: threading.Event = field(default_factory=threading.Event)  # /forever saw http.disconnect
    first_chunk: threading.Event = field(default_factory=threading.Event)  # /upload got its first bytes
    seen: dict[str, Any] = field(default_factory=dict)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["path"] == "/sse":
            await self._sse(send)
        elif scope["path"] == "/forever":
            await self._forever(receive, send)
        elif scope["path"] == "/upload":
            await self._upload(receive, send)
        else:
            self.seen["headers"] = {k.decode(): v.decode() for k, v in scope["headers"]}
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]})
            await send({"type": "http.response.body", "body": b"hello"})

    async def _sse(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        released = await asyncio.to_thread(self.release.wait, WAIT)
        await send({"type": "http.response.body", "body": b"data: last\n\n" if released else b"data: timeout\n\n"})
        self.stream_ended.set()

    async def _forever(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        self.client_left.set()

    async def _upload(self, receive: Any, send: Any) -> None:
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            if message.get("body"):
                self.first_chunk.set()
            digest.update(message.get("body", b""))
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"size": size, "sha256": digest.hexdigest()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        if scope["path"] != "/echo":
            await send({"type": "websocket.close", "code": 1008})  # uvicorn answers the handshake with 403
            return
        await send({"type": "websocket.accept", "subprotocol": (scope.get("subprotocols") or [None])[0]})
        while (message := await receive())["type"] == "websocket.receive":
            if message.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    app = Backend()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # date and server headers on
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the backend did not start"
        time.sleep(0.02)
    yield app
    server.should_exit = True
    thread.join(WAIT)


@dataclass
class Router:
    url: str
    traffic: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def ws(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def switch(self, revision: str, port: int) -> None:
        atomic_write(self.traffic, json.dumps({"splits": [{"revision": revision, "percent": 100, "port": port}]}))


def _start_router(state: Path) -> Router:
    """The router as deployctl starts it: ``python -m deployctl.targets.local.router TRAFFIC HOST PORT``."""
    traffic, log = state / "traffic.json", state / "router.log"
    for _ in range(3):  # a port picked free may be taken by another process before the router binds it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "deployctl.targets.local.router", str(traffic),
                                     "127.0.0.1", str(port)], stderr=out)
        if _listening(port, proc):
            return Router(f"http://127.0.0.1:{port}", traffic, proc, log)
        proc.kill()
        proc.wait()
    raise AssertionError(f"the router did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """One router for the module (its imports take seconds on a loaded machine); each test sets its traffic."""
    started = _start_router(tmp_path_factory.mktemp("router"))
    yield started
    started.proc.terminate()
    started.proc.wait(WAIT)
    assert "Traceback" not in started.log.read_text()  # nothing above failed inside the router either


def _listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + WAIT
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _first_event_then(router: Router, backend: Backend, meanwhile: Callable[[], None]) -> httpx.Response:
    """Open /sse on api-00001 and take its first event while the backend holds the rest back; then run
    *meanwhile*, release the backend and read the stream to its end."""
    router.switch("api-00001", backend.port)
    backend.release.clear()
    backend.stream_ended.clear()
    with httpx.stream("GET", f"{router.url}/sse", timeout=WAIT) as response:
        lines = response.iter_lines()
        assert next(lines) == "data: first"
        assert not backend.stream_ended.is_set()  # the backend is still waiting for this line's release
        meanwhile()
        backend.release.set()
        assert [line for line in lines if line] == ["data: last"]
    return response


def test_an_sse_event_arrives_before_the_response_ends(router: Router, backend: Backend) -> None:
    response = _first_event_then(router, backend, lambda: None)
    assert response.headers["x-deployctl-revision"] == "api-00001"
    assert response.headers["content-type"] == "text/event-stream"


def test_a_client_that_leaves_a_stream_closes_it_on_the_revision(router: Router, backend: Backend) -> None:
    router.switch("api-00001", backend.port)
    with httpx.stream("GET", f"{router.url}/forever", timeout=WAIT) as response:
        assert next(response.iter_lines()) == "data: hello"
    assert backend.client_left.wait(WAIT)


def test_an_upload_reaches_the_revision_while_the_client_still_sends(router: Router, backend: Backend) -> None:
    router.switch("api-00001", backend.port)
    backend.first_chunk.clear()
    chunk = bytes(range(256)) * 4096  # 1 MiB
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        sent.update(chunk)
        yield chunk
        # the rest is held back until the revision has the first part: a buffering router would wait forever
        assert backend.first_chunk.wait(WAIT), "the revision got nothing before the upload ended"
        for _ in range(7):
            sent.update(chunk)
            yield chunk

    response = httpx.post(f"{router.url}/upload", content=body(), timeout=WAIT)
    assert response.json() == {"size": 8 * len(chunk), "sha256": sent.hexdigest()}
    assert response.headers["x-deployctl-revision"] == "api-00001"


def test_a_websocket_echoes_through_the_router(router: Router, backend: Backend) -> None:
    router.switch("api-00001", backend.port)
    with connect(f"{router.ws}/echo", subprotocols=[Subprotocol("chat")], open_timeout=WAIT) as ws:
        assert ws.response is not None and ws.response.headers["x-deployctl-revision"] == "api-00001"
        assert ws.subprotocol == "chat"
        ws.send("hello")
        assert ws.recv(WAIT) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(WAIT) == b"\x00\x01binary"
        ws.send("bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(WAIT)
    assert (ws.close_code, ws.close_reason) == (4001, "asked to")  # the revision's close code crosses


def test_a_websocket_the_revision_refuses_gets_its_status(router: Router, backend: Backend) -> None:
    router.switch("api-00001", backend.port)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{router.ws}/nope", open_timeout=WAIT)
    assert refused.value.response.status_code == 403
    assert refused.value.response.headers["x-deployctl-revision"] == "api-00001"


def test_the_revisions_headers_pass_once_and_the_request_keeps_its_host(router: Router, backend: Backend) -> None:
    router.switch("api-00001", backend.port)
    response = httpx.get(f"{router.url}/hello?x=1", timeout=WAIT)
    assert response.text == "hello"
    assert len(response.headers.get_list("date")) == 1
    assert response.headers.get_list("server") == ["uvicorn"]  # the backend's; the router adds none
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["x-deployctl-revision"] == "api-00001"
    seen = backend.seen["headers"]
    assert seen["host"] == router.url.removeprefix("http://")
    assert (seen["x-forwarded-for"], seen["x-forwarded-proto"]) == ("127.0.0.1", "http")


def test_a_switch_moves_the_next_request_and_a_stream_in_flight_finishes(router: Router, backend: Backend) -> None:
    served_next: list[str] = []

    def switch() -> None:
        router.switch("api-00002", backend.port)  # the same server under another name tells them apart
        served_next.append(httpx.get(f"{router.url}/hello", timeout=WAIT).headers["x-deployctl-revision"])

    response = _first_event_then(router, backend, switch)
    assert (response.headers["x-deployctl-revision"], served_next) == ("api-00001", ["api-00002"])


def test_without_a_revision_the_router_answers_503_itself(router: Router) -> None:
    router.traffic.unlink(missing_ok=True)
    response = httpx.get(f"{router.url}/hello", timeout=WAIT)
    assert (response.status_code, response.json()) == (503, {"error": "no revision serves this service yet"})
    assert len(response.headers.get_list("date")) == 1 and "server" not in response.headers


def test_a_stream_left_open_does_not_keep_the_router_from_stopping(tmp_path: Path, backend: Backend) -> None:
    own = _start_router(tmp_path)
    try:
        own.switch("api-00001", backend.port)
        backend.client_left.clear()
        with httpx.stream("GET", f"{own.url}/forever", timeout=WAIT) as response:
            assert next(response.iter_lines()) == "data: hello"
            own.proc.terminate()  # what processes.stop sends first (a down, a router on a new port)
            own.proc.wait(WAIT)  # uvicorn's shutdown tells the relay its client left, so it ends the stream
        assert backend.client_left.wait(WAIT)  # and the revision's end of it was closed, not left hanging
    finally:
        own.proc.kill()
        own.proc.wait()
