"""Install extras by target: deployctl without extras runs `--help`, and a target opened without its
extra stops before any change with one line naming the extra (deployctl/extras.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared import made_once

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
SOURCES = ["deployctl", "pyproject.toml", "uv.lock", "README.md", "app/pyproject.toml", "Pulumi.yaml", "stacks"]


@pytest.fixture(scope="session")
def bare() -> Path:
    """deployctl with no extra, installed from uv.lock into a fresh venv, in a copy of this project (made once
    per test run for every worker: tests/shared.py)."""
    return made_once("bare-install", _install_bare)


def _install_bare(project: Path) -> None:
    for rel in SOURCES:
        src, dest = ROOT / rel, project / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(project / "venv")}
    out = subprocess.run([str(UV), "sync", "--quiet", "--frozen", "--no-dev", "--no-editable",
                          "--python", sys.executable], cwd=project, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr


def deployctl(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(project / "venv" / "bin" / "deployctl"), *args], cwd=project,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_bare_install_has_neither_target(bare: Path) -> None:
    python = str(bare / "venv" / "bin" / "python")
    probe = ("import importlib.metadata as m; names = {d.metadata['Name'] for d in m.distributions()}; "
             "print(sorted(names & {'pgserver', 'psycopg', 'pulumi', 'google-cloud-run', 'pytest'}))")
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    assert out.stdout == "[]\n", out.stderr


def test_help_works_without_extras_and_names_them(bare: Path) -> None:
    out = deployctl(bare, "--help")
    assert out.returncode == 0, out.stderr
    assert "deployctl[local]" in out.stdout and "deployctl[gcp]" in out.stdout


def test_local_stack_without_the_local_extra(bare: Path) -> None:
    out = deployctl(bare, "status", "local")
    assert out.returncode == 5 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith("Error: the local target needs the deployctl[local] extra, which is not installed")
    assert "pgserver" in lines[0]
    assert lines[1] == ("Hint: Install it: pip install 'deployctl[local]'  (in this repository: scripts/install "
                        "--inexact --extra local, which keeps the other extras)")
    assert len(lines) == 2
    assert not (bare / ".deployctl").exists()


def test_gcp_stack_without_the_gcp_extra(bare: Path) -> None:
    out = deployctl(bare, "plan", "staging")
    assert out.returncode == 5
    assert out.stderr.startswith("Error: the Google Cloud target needs the deployctl[gcp] extra")
    assert "pulumi" in out.stderr and "Traceback" not in out.stderr


def test_the_installed_policy_pack_reads_the_stacks_of_the_project_it_is_installed_in(bare: Path) -> None:
    """Pulumi runs the pack in its directory, inside the project's venv (not an editable checkout here)."""
    probe = ("from deployctl.config import project_root; from deployctl.infra.policies import DIRECTORY; "
             "print(DIRECTORY); print(project_root(DIRECTORY))")
    out = subprocess.run([str(bare / "venv" / "bin" / "python"), "-c", probe], cwd="/", capture_output=True,
                         text=True, check=False)
    directory, root = (Path(line) for line in out.stdout.splitlines())
    assert directory.is_relative_to(bare / "venv") and (directory / "PulumiPolicy.yaml").is_file(), out.stderr
    assert root == bare
