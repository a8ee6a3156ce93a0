"""The local stack's stable service URL: a small reverse proxy that plays Cloud Run's front end.

Run as ``python -m deployctl.targets.local.router TRAFFIC_FILE HOST PORT``. The traffic file (written
atomically by deployctl) lists revisions with their ports and percents; the router re-reads it whenever
its mtime changes, so a switch takes effect for the very next request while requests already in flight
finish on the revision they started on: no request fails during a switch. Every response (and every
WebSocket handshake) carries ``x-deployctl-revision`` naming the revision that served it.

Rule: like Cloud Run's front end, nothing is buffered whole. A request body goes to the revision as it
arrives, the response comes back chunk by chunk as the revision writes it (server-sent events, token
streams), and a WebSocket is passed through message by message. The revision's headers pass through
once: the router's own server adds no ``date`` or ``server`` of its own.

The glue is here rather than in a proxy library because the router picks a revision per request from a
file that changes under it and names that revision on the answer; the ASGI proxy libraries (asgiproxy,
fastapi-proxy-lib) proxy to one fixed upstream. The protocols themselves are the libraries': httpx streams
HTTP both ways, ``websockets`` is the WebSocket client, and uvicorn (with ``websockets``) serves.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx

from deployctl.targets.local import router_ws

# hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business on each side; the rest pass through
_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
        b"trailer", b"trailers", b"transfer-encoding", b"upgrade"}

Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]


class Router:
    def __init__(self, traffic_file: Path) -> None:
        self.traffic_file = traffic_file
        self._mtime = -1
        self._splits: list[dict[str, Any]] = []
        # no read timeout: a stream may be quiet for as long as the revision likes (Cloud Run's request
        # timeout is the revision's setting, not the front end's)
        # (and no proxy from the environment: the revision is on loopback)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0), trust_env=False)

    def _load(self) -> list[dict[str, Any]]:
        try:
            mtime = self.traffic_file.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime != self._mtime:
            self._splits = [s for s in json.loads(self.traffic_file.read_text())["splits"] if s["percent"] > 0]
            self._mtime = mtime
        return self._splits

    def pick(self) -> dict[str, Any] | None:
        splits = self._load()
        if not splits:
            return None
        return random.choices(splits, weights=[s["percent"] for s in splits])[0]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        target = self.pick()
        if scope["type"] == "websocket":
            upstream = (target["revision"], _url("ws", target["port"], scope)) if target else None
            await router_ws.proxy(scope, receive, send, upstream, forwarded(scope))
        elif scope["type"] == "http":
            if target is None:
                await _respond(send, 503, b'{"error": "no revision serves this service yet"}', None)
            else:
                await self._http(scope, receive, send, target)

    async def _http(self, scope: Scope, receive: Any, send: Any, target: dict[str, Any]) -> None:
        revision = target["revision"]
        headers = forwarded(scope)
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        request = self._client.build_request(
            scope["method"], _url("http", target["port"], scope), headers=headers,
            content=_body(receive) if has_body else None,
        )
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            await _respond(send, 502, b'{"error": "the revision did not answer"}', revision)
            return
        try:
            out = [(k, v) for k, v in upstream.headers.raw if k.lower() not in _HOP]
            out.append((b"x-deployctl-revision", revision.encode()))
            await send({"type": "http.response.start", "status": upstream.status_code, "headers": out})
            await _until_disconnect(receive, _relay(upstream, send))
        finally:
            await upstream.aclose()


def forwarded(scope: Scope) -> Headers:
    """The request's end-to-end headers, ``host`` included (an app builds its redirects and checks its
    allowed hosts from it, as behind Cloud Run), plus the ``x-forwarded-*`` pair Cloud Run adds."""
    headers: Headers = []
    forwarded_for = b""
    for key, value in scope["headers"]:
        name = key.lower()
        if name == b"x-forwarded-for":
            forwarded_for = value + b", "
        elif name not in _HOP:
            headers.append((name, value))
    client = scope.get("client")
    headers.append((b"x-forwarded-for", forwarded_for + (client[0] if client else "").encode()))
    if not any(k == b"x-forwarded-proto" for k, _ in headers):
        scheme = str(scope.get("scheme", "http"))
        headers.append((b"x-forwarded-proto", {"ws": "http", "wss": "https"}.get(scheme, scheme).encode()))
    return headers


def _url(scheme: str, port: int, scope: Scope) -> str:
    """The revision's URL for the request, its path as the client wrote it (still percent-encoded)."""
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")


async def _body(receive: Any) -> AsyncIterator[bytes]:
    """The request body as the client sends it, chunk by chunk: a large upload is never held whole."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return


async def _relay(upstream: httpx.Response, send: Any) -> None:
    async for chunk in upstream.aiter_raw():  # raw: a gzip body stays gzip, its content-length stays true
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Any, relay: Any) -> None:
    """Run *relay* until it ends or the client goes away; a client that leaves an endless stream (an SSE
    tab closed) closes the revision's stream too, as Cloud Run's front end does."""
    relaying = asyncio.ensure_future(relay)
    watching = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        relaying.cancel()
    if relaying.done() and not relaying.cancelled():
        relaying.result()  # a failure mid-stream surfaces in the router's log; the client sees a cut body


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(send: Any, status: int, body: bytes, revision: str | None) -> None:
    """An answer of the router's own (no revision answered): it is the origin here, so it dates it."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"date", formatdate(usegmt=True).encode())]
    if revision:
        raw.append((b"x-deployctl-revision", revision.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str]) -> None:
    import uvicorn

    traffic_file, host, port = Path(argv[0]), argv[1], int(argv[2])
    # the revision's date and server headers pass through; uvicorn adding its own sent each one twice
    uvicorn.run(Router(traffic_file), host=host, port=port, log_level="warning", access_log=False,
                server_header=False, date_header=False)


if __name__ == "__main__":
    main(sys.argv[1:])
