"""uv.lock is the one lock: it must match the pyproject files it was made from, and every file exported
from it must be exactly what uv exports now. A new release on PyPI changes neither, so it fails nothing.

uv runs offline with an empty cache of its own (not the user's, which it would find through the password
database even without HOME): what these tests see cannot depend on what a machine's cache happens to hold.
"""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"  # the locked uv, installed from the `tools` group
INPUTS = ["pyproject.toml", "app/pyproject.toml", "uv.lock"]


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="uv-cache-") as cache:
        env = {"PATH": "/usr/bin:/bin", "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never",
               "UV_PYTHON": sys.executable, "UV_CACHE_DIR": cache}
        return subprocess.run([str(UV), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                              check=False)


def copy_inputs(dest: Path) -> Path:
    for rel in INPUTS:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def test_the_lock_matches_its_inputs() -> None:
    out = uv("lock", "--check", "--offline")
    assert out.returncode == 0, out.stderr


def test_the_check_fails_when_an_input_changes(tmp_path: Path) -> None:
    """A changed input makes uv judge the lock stale before it resolves anything, so the check fails.

    A matching lock is accepted without a resolution (the test above, with the same empty cache). A stale
    one sends uv to resolve anew, which offline with an empty cache cannot finish: the check fails either
    way, and uv's own verdict, logged before the resolution, says it is the changed input that made it
    resolve. (With a cache that holds every package's index pages, uv would finish the resolution and say
    the lock "needs to be updated" instead; these tests never see such a cache.)
    """
    project = copy_inputs(tmp_path)
    assert uv("lock", "--check", "--offline", cwd=project).returncode == 0  # the copy alone changes nothing
    app = project / "app" / "pyproject.toml"
    app.write_text(app.read_text().replace('    "pgvector>=0.2",\n', ""))  # a dependency dropped
    assert "pgvector" not in app.read_text()
    out = uv("lock", "--check", "--offline", "--verbose", cwd=project)
    assert out.returncode == 1, out.stderr
    assert ("Resolving despite existing lockfile due to mismatched requirements for: `deployctl-sample-app"
            in out.stderr), out.stderr
    assert "the network was disabled" in out.stderr.splitlines()[-1], out.stderr


def test_exported_requirements_are_the_lock_now(tmp_path: Path) -> None:
    """app/requirements.txt names the command that made it; running it again gives the same file."""
    text = (ROOT / "app" / "requirements.txt").read_text()
    header = text.splitlines()[1].lstrip("# ").split()
    assert header[:2] == ["uv", "export"] and header[-2:] == ["-o", "app/requirements.txt"], header
    again = tmp_path / "requirements.txt"
    out = uv(*header[1:-2], "--quiet", "-o", str(again))
    assert out.returncode == 0, out.stderr
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body == [ln for ln in again.read_text().splitlines() if not ln.startswith("#")]


def test_uv_bootstrap_reads_its_pin_from_the_lock() -> None:
    locked_uv = runpy.run_path(str(ROOT / "scripts" / "bootstrap-uv"))["locked_uv"]
    version, hashes = locked_uv(ROOT / "uv.lock")
    assert uv("--version").stdout.split()[1] == version  # what runs here is what the lock pins
    assert len(hashes) > 1 and all(h.startswith("sha256:") for h in hashes)
