"""Serving a fake's HTTP server from a thread that stops promptly.

``serve_forever`` checks for ``shutdown()`` every ``poll_interval`` (0.5 s by default), so a fake stopped at a
test's end would hold the test half a second for nothing; fakes poll every POLL_S instead.
"""

from __future__ import annotations

import threading
from socketserver import BaseServer

POLL_S = 0.02


def serve_in_thread(server: BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_S}, daemon=True)
    thread.start()
    return thread
