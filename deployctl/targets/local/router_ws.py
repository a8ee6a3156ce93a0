"""WebSockets through the local router, as Cloud Run carries them: the handshake goes to the revision the
traffic split picked, its answer (accepted with its subprotocol, or refused with its status) comes back
with ``x-deployctl-revision``, then messages pass both ways one by one until either side closes, and the
close code crosses too. A connection stays on the revision it opened on, whatever the traffic file says
later (like any request in flight).

The WebSocket protocol is the ``websockets`` library's, on both sides: it is uvicorn's server
implementation for the router, and its asyncio client talks to the revision.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]

# the handshake's own headers: each side's library makes them for its hop (and the client sets Host)
_HANDSHAKE = {b"host", b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
              b"sec-websocket-protocol", b"sec-websocket-accept", b"connection", b"upgrade", b"content-length"}


async def proxy(scope: Scope, receive: Any, send: Any, target: tuple[str, str] | None, headers: Headers) -> None:
    """Pass the WebSocket of *scope* to *target* (the revision's name and its ``ws://`` URL)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if target is None:
        await _refuse(scope, send, 503, [], b'{"error": "no revision serves this service yet"}', None)
        return
    revision, url = target
    try:
        upstream = await connect(
            url, additional_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers
                                     if k not in _HANDSHAKE],
            subprotocols=scope.get("subprotocols") or None, user_agent_header=None, proxy=None,
            open_timeout=5, ping_interval=None, max_size=None,  # the revision and the client set these
        )
    except InvalidStatus as refused:
        answer = refused.response
        passed = [(k.lower().encode(), v.encode()) for k, v in answer.headers.raw_items()]
        await _refuse(scope, send, answer.status_code, passed, bytes(answer.body or b""), revision)
        return
    except (OSError, TimeoutError, ConnectionClosed):
        await _refuse(scope, send, 502, [], b'{"error": "the revision did not answer"}', revision)
        return
    async with upstream:
        answered = upstream.response.headers.raw_items() if upstream.response else []
        accepted = [(k.lower().encode(), v.encode()) for k, v in answered if k.lower().encode() not in _HANDSHAKE]
        accepted.append((b"x-deployctl-revision", revision.encode()))
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": accepted})
        await _relay_both(receive, send, upstream)


async def _relay_both(receive: Any, send: Any, upstream: ClientConnection) -> None:
    to_revision = asyncio.ensure_future(_client_to_revision(receive, upstream))
    to_client = asyncio.ensure_future(_revision_to_client(send, upstream))
    try:
        await asyncio.wait({to_revision, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        to_revision.cancel()
        to_client.cancel()


async def _client_to_revision(receive: Any, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(_sendable(message.get("code", 1000)), message.get("reason") or "")
            return
        data = message.get("text") if message.get("text") is not None else message.get("bytes")
        if data is not None:
            try:
                await upstream.send(data)
            except ConnectionClosed:
                return  # the other direction reports how the revision closed


async def _revision_to_client(send: Any, upstream: ClientConnection) -> None:
    try:
        async for data in upstream:
            key = "text" if isinstance(data, str) else "bytes"
            await send({"type": "websocket.send", key: data})
    except ConnectionClosed:
        pass
    code = upstream.close_code if upstream.close_code is not None else 1006
    await send({"type": "websocket.close", "code": _sendable(code), "reason": upstream.close_reason or ""})


def _sendable(code: int) -> int:
    """A close code that may go on the wire: 1005, 1006 and 1015 only report what happened (RFC 6455
    §7.4.1), so a peer that vanished is passed on as a going-away (1001)."""
    return code if 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015) else 1001


async def _refuse(scope: Scope, send: Any, status: int, headers: Headers, body: bytes, revision: str | None) -> None:
    """Answer the handshake with an HTTP response, as Cloud Run does when the revision refuses it; servers
    without ASGI's denial-response extension can only close (the client then sees a 403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    out = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding", b"connection")]
    out.append((b"content-length", str(len(body)).encode()))
    if revision:
        out.append((b"x-deployctl-revision", revision.encode()))
    await send({"type": "websocket.http.response.start", "status": status, "headers": out})
    await send({"type": "websocket.http.response.body", "body": body})
