"""The local stack's stable service URL: a small reverse proxy that plays Cloud Run's traffic split.

Run as ``python -m deployctl.targets.local.router TRAFFIC_FILE HOST PORT``. The traffic file (written
atomically by deployctl) lists revisions with their ports and percents; the router re-reads it whenever
its mtime changes, so a switch takes effect for the very next request while requests already in flight
finish on the revision they started on: no request fails during a switch. Every response carries
``x-deployctl-revision`` naming the revision that served it.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import httpx

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "host", "content-length"}

Scope = dict[str, Any]


class Router:
    def __init__(self, traffic_file: Path) -> None:
        self.traffic_file = traffic_file
        self._mtime = -1
        self._splits: list[dict[str, Any]] = []
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0))

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
        if scope["type"] != "http":
            return
        target = self.pick()
        if target is None:
            await _respond(send, 503, b'{"error": "no revision serves this service yet"}', [], None)
            return
        body = await _read_body(receive)
        url = f"http://127.0.0.1:{target['port']}{scope['path']}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode()
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode().lower() not in _HOP]
        try:
            upstream = await self._client.request(scope["method"], url, headers=headers, content=body)
        except httpx.HTTPError:
            await _respond(send, 502, b'{"error": "the revision did not answer"}', [], target["revision"])
            return
        out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP]
        await _respond(send, upstream.status_code, upstream.content, out, target["revision"])


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[str, str]], revision: str | None) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    if revision:
        raw.append((b"x-deployctl-revision", revision.encode()))
    if not headers:
        raw.append((b"content-type", b"application/json"))
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
    uvicorn.run(Router(traffic_file), host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
