"""Fixed ports for the tests' stacks, safe beside other test runs on the same machine.

A stack's ``local.port`` (its router; service i gets port + i) is written into the stack file and bound
later by the router, so a port must stay this process's between the pick and the bind. Ports are taken
below Linux's ephemeral range (32768-60999, where the kernel puts revisions' ``bind(0)`` ports and client
sockets: a port picked there can be handed to another revision before the router binds it), in blocks of
BLOCK_SIZE. Each test process claims a block of its own for its whole life with an OS file lock
(``flock`` on ``deployctl-test-ports-<block>.lock`` in the system temp directory), so xdist workers and
other test runs on this machine (another clone's ``scripts/test`` at the same time) never pick from the
same block; the kernel drops the lock when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import tempfile
from pathlib import Path

FIRST, LAST = 20000, 32000  # the blocks' range: below the ephemeral range, above the usual services' ports
BLOCK_SIZE = 400
STRIDE = 8  # ports per stack: its router's and one per service
BLOCKS = (LAST - FIRST) // BLOCK_SIZE

_claimed: tuple[int, int] | None = None  # (block, the locked file's descriptor) while this process lives
_picked = itertools.count()


def claim_block(directory: Path | None = None) -> int:
    """Lock a block no other process holds and return its number; held until the process exits. Starts at a
    block derived from the xdist worker's number, so one run's workers rarely contend."""
    folder = Path(directory or tempfile.gettempdir())
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    for offset in range(BLOCKS):
        block = (worker + offset) % BLOCKS
        path = folder / f"deployctl-test-ports-{block}.lock"
        try:  # read-only: a lock file another user made (0644 in a sticky /tmp) can still be locked
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:  # e.g. fs.protected_regular refusing O_CREAT on another user's file: take the next
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        global _claimed
        _claimed = (block, fd)
        return block
    raise RuntimeError(f"all {BLOCKS} port blocks ({FIRST}-{LAST - 1}) are held by other test processes")


def free_port() -> int:
    """A port of this process's block, free now, whose next STRIDE - 1 ports the stack's services may use.
    Successive calls step through the block (wrapping after BLOCK_SIZE // STRIDE stacks, whose routers the
    tests have stopped by then), skipping any port something else has bound."""
    block = _claimed[0] if _claimed else claim_block()
    slots = BLOCK_SIZE // STRIDE
    for _ in range(slots):
        port = FIRST + block * BLOCK_SIZE + (next(_picked) % slots) * STRIDE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in block {block} ({FIRST + block * BLOCK_SIZE}-)")
