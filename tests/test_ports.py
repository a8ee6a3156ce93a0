"""tests/ports.py: test processes of one run and of runs beside it claim disjoint port blocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import ports

ROOT = Path(__file__).resolve().parents[1]
# A stand-in for one test process: claims a block in the directory given, says which and its first port,
# then holds it until its stdin closes.
CLAIMER = """\
import sys
from pathlib import Path
from tests import ports
block = ports.claim_block(Path(sys.argv[1]))
print(block, ports.free_port(), flush=True)
sys.stdin.read()
"""


def _claimer(directory: Path, worker: str) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTEST_XDIST_WORKER": worker}
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(directory)], env=env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _claimed(proc: subprocess.Popen[str]) -> tuple[int, int]:
    assert proc.stdout is not None
    block, port = proc.stdout.readline().split()
    return int(block), int(port)


def test_two_runs_workers_claim_disjoint_blocks(tmp_path: Path) -> None:
    # the same xdist worker name in two runs (gw0 here and gw0 in another clone's run) starts at the same block
    procs = [_claimer(tmp_path, "gw0"), _claimer(tmp_path, "gw0"), _claimer(tmp_path, "gw1")]
    try:
        claims = [_claimed(p) for p in procs]
    finally:
        for p in procs:
            p.communicate("")
    blocks = [b for b, _ in claims]
    assert sorted(blocks) == [0, 1, 2]
    for block, port in claims:
        assert ports.FIRST + block * ports.BLOCK_SIZE <= port < ports.FIRST + (block + 1) * ports.BLOCK_SIZE


def test_a_block_is_free_again_once_its_process_ends(tmp_path: Path) -> None:
    first = _claimer(tmp_path, "gw3")
    held, _ = _claimed(first)
    first.communicate("")
    second = _claimer(tmp_path, "gw3")
    try:
        again, _ = _claimed(second)
    finally:
        second.communicate("")
    assert (held, again) == (3, 3)
