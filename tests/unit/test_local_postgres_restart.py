"""The embedded Postgres starts again after a stop (`down`, then `up`): the link to its socket that deployctl
makes is removed with the socket. (Found trying deployctl as a new user: every second `up` after `down`
failed with 'the embedded Postgres did not start (OSError)'.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# one start, a query and a stop, in a process of its own as `up` and `down` are (pgserver keeps its servers
# per process, so a second start in the same process would not start anything)
CYCLE = """
import sys
from pathlib import Path
from deployctl.config import Database
from deployctl.targets.local.postgres import LocalDatabase
db = LocalDatabase(Path(sys.argv[1]), Database())
db.start()
with db.admin() as conn:
    assert conn.execute("SELECT 1").fetchone() == (1,)
db.stop()
assert not db.running()
"""


def test_the_embedded_postgres_starts_again_after_a_stop(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    for cycle in range(3):
        done = subprocess.run([sys.executable, "-c", CYCLE, str(pgdata)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"cycle {cycle}: {done.stderr[-600:]}"
        assert not (pgdata / ".s.PGSQL.5432").is_symlink(), "a link to the stopped server's socket is left behind"
