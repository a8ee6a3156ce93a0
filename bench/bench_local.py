"""Local target and CLI start-up benchmarks (issue budgets):

- `deployctl --help` <= 1.3 x `python -c "import click"`, measured in the same run;
- no-change `up local` <= 1.5 s;
- `up local` after a code change with deps cached <= 1.5 s (issue 16; it was 2.5 s). The floor of such a
  release is the candidate's own start-up plus its smoke checks: the migrate job does not run when its
  files and the database head are the serving release's (nothing to migrate), the database already
  running is adopted without pgserver, and no poll waits longer than it must (startup probe, job exit,
  router start, process stop);
- `rollback local` <= 0.3 s (issue 16; it was 0.61 s). Its floor is one traffic switch and the checks
  through the service URL, plus the CLI's start-up: the database head is read over one connection of the
  server found running, and the command's HTTP clients share one TLS context.

Runs the real sample app (app/) in a throwaway copy of the project on a free port. The first `up`
(Postgres init, venv creation) is warm-up and not timed.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from bench.common import USER_ENV, Result, report, timed_call, timed_pair

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _project(tmp: Path) -> Path:
    proj = tmp / "proj"
    shutil.copytree(ROOT / "app", proj / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", proj / "Pulumi.yaml")  # the app's one definition
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack = (ROOT / "stacks" / "Pulumi.local.yaml").read_text()
    (proj / "stacks" / "Pulumi.local.yaml").write_text(re.sub(r"port: 8080\n", f"port: {port}\n", stack, count=1))
    return proj


def run() -> bool:
    import subprocess

    results = []
    click_s, help_s = timed_pair([PY, "-c", "import click"], [PY, "-m", "deployctl", "--help"])
    results.append(Result("deployctl --help", help_s, 1.3 * click_s, f"1.3 x import click ({click_s:.3f}s)"))
    with tempfile.TemporaryDirectory() as tmp:
        proj = _project(Path(tmp))
        env = {**USER_ENV, "DEPLOYCTL_STATE_DIR": str(Path(tmp) / "state")}

        def dc(*args: str) -> None:
            subprocess.run([PY, "-m", "deployctl", *args], cwd=proj, env=env, check=True, capture_output=True)

        try:
            dc("up", "local")  # warm-up: Postgres, venv, first release
            results.append(Result("up local, nothing changed", timed_call(lambda: dc("up", "local")), 1.5, "1.5 s"))
            counter = iter(range(100))

            def change_and_up() -> None:
                with open(proj / "app" / "__init__.py", "a") as handle:
                    handle.write(f"# bench change {next(counter)}\n")
                dc("up", "local")

            results.append(Result("up local after a code change (deps cached)", timed_call(change_and_up), 1.5,
                                  "1.5 s"))
            results.append(Result("rollback local", timed_call(lambda: dc("rollback", "local")), 0.3, "0.3 s"))
        finally:
            subprocess.run([PY, "-m", "deployctl", "down", "local", "--purge", "--yes"], cwd=proj, env=env,
                           capture_output=True, check=False)
    return report("local target and CLI", results)


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
