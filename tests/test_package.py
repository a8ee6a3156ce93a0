"""deployctl's wheel holds the Pulumi program and its policy pack, so a project installs them and keeps only a
two-line entry (infra/__main__.py); and no file in the repository edits the import path to find its code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".venv", ".git", ".deployctl", "build", "dist", "__pycache__", ".mypy_cache", ".ruff_cache",
           ".pytest_cache", "node_modules"}
# a call that changes the import path (its insert, append, extend or remove; site's addsitedir) or an
# assignment to it (augmented, whole, or of one item); reading it is fine
EDITS_PATH = re.compile(r"\bsys\s*\.\s*path\s*(\.\s*(insert|append|extend|remove)\s*\(|\+=|=(?!=)|\[[^\]]*\]\s*=(?!=))"
                        r"|\bsite\s*\.\s*addsitedir\s*\(")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The names in deployctl's wheel, built from a copy of the sources by the locked setuptools, offline."""
    project = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT / "deployctl", project / "deployctl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    build = "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"
    out = subprocess.run([sys.executable, "-c", build], cwd=project, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    with zipfile.ZipFile(project / "dist" / out.stdout.splitlines()[-1]) as built:
        return set(built.namelist())


def test_the_wheel_ships_the_program_and_the_policy_pack(wheel: set[str]) -> None:
    program = {p.relative_to(ROOT).as_posix() for p in (ROOT / "deployctl" / "infra").rglob("*")
               if p.is_file() and p.suffix in (".py", ".yaml")}
    assert {"deployctl/infra/program.py", "deployctl/infra/main.py", "deployctl/infra/policies/__main__.py",
            "deployctl/infra/policies/PulumiPolicy.yaml"} <= program
    assert program <= wheel
    assert "deployctl/naming.py" in wheel
    assert not any(name.startswith("infra/") for name in wheel)  # the project's entry is not the program


def test_the_project_entry_only_imports_the_installed_program() -> None:
    entry = (ROOT / "infra" / "__main__.py").read_text()
    code = [line for line in entry.splitlines() if line.strip() and not line.startswith(('"""', "#"))]
    assert code == ["from deployctl.infra.main import run", "run()"]
    assert sorted(p.name for p in (ROOT / "infra").iterdir() if p.name != "__pycache__") == ["__main__.py"]
    assert re.search(r"^main: infra/$", (ROOT / "Pulumi.yaml").read_text(), re.M)


def _edits(text: str) -> list[str]:
    return [m.group(0) for m in EDITS_PATH.finditer(text)]


def test_the_check_below_sees_every_way_of_editing_the_path() -> None:
    path = "sys" + ".path"  # spelt in two parts so that this file passes its own check
    for edit in (".insert(0, root)", ".append(str(ROOT))", ".extend([a])", " += [a]", " = [a]", "[0] = a"):
        assert _edits(path + edit), edit
    assert _edits("site" + ".addsitedir(d)")
    assert not _edits(f"if {path} == x or {path}[0] == x: print({path})")  # reading it is fine


def test_no_file_in_the_repository_edits_the_import_path() -> None:
    found = []
    for path in sorted(ROOT.rglob("*")):
        if SKIPPED & set(path.relative_to(ROOT).parts) or path.suffix == ".egg-info" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # not text
        found += [f"{path.relative_to(ROOT)}: {edit}" for edit in _edits(text)]
    assert found == []
