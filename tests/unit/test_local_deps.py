"""How the local target finds a service's dependency spec, what keys its venv, what counts as a package, and how
a poetry lock becomes pinned requirements."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployctl.errors import PreconditionError
from deployctl.targets.local import build, deps, interpreters

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


PACKAGE = '[project]\nname = "backend"\nversion = "1"\n[build-system]\nrequires = ["hatchling"]\n'


def test_a_workspace_lock_above_the_source_wins_over_the_members_pyproject() -> None:
    spec = deps.find(FIXTURES / "uvworkspace", "backend")
    assert (spec.kind, spec.shown) == ("uv", "uv.lock")
    assert spec.project == (FIXTURES / "uvworkspace" / "backend").resolve()
    assert [p.name for p in spec.inputs()] == ["pyproject.toml", "pyproject.toml", "uv.lock"]
    assert deps.own_project(spec, FIXTURES / "uvworkspace" / "backend") == spec.project  # hatchling: a package


def test_the_nearest_spec_wins(tmp_path: Path) -> None:
    _write(tmp_path, {"uv.lock": "", "pyproject.toml": "[project]\nname='root'\n", "app/requirements.txt": "x\n",
                      "app/pyproject.toml": '[project]\nname = "app"\n[tool.uv]\npackage = false\n'})
    spec = deps.find(tmp_path, "app")
    assert (spec.kind, spec.shown) == ("requirements", "app/requirements.txt")  # as this repository's sample app
    assert deps.own_project(spec, tmp_path / "app") is None  # tool.uv.package = false
    _write(tmp_path, {"svc/pyproject.toml": PACKAGE, "svc/poetry.lock": ""})
    assert deps.find(tmp_path, "svc").kind == "poetry"


def test_a_pyproject_counts_only_without_any_lock_or_requirements(tmp_path: Path) -> None:
    _write(tmp_path, {"app/pyproject.toml": PACKAGE + "[tool.poetry]\npackage-mode = false\n"})
    spec = deps.find(tmp_path, "app")
    assert (spec.kind, spec.shown) == ("pyproject", "app/pyproject.toml")
    assert deps.own_project(spec, tmp_path / "app") is None  # poetry's package-mode = false


def test_no_spec_is_one_line_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    with pytest.raises(PreconditionError) as caught:
        deps.find(tmp_path, "app")
    assert caught.value.message == ("no dependency spec for app/: no uv.lock, poetry.lock or requirements.txt from "
                                    "app/ up to the project root, and no pyproject.toml with a [project] table")
    assert caught.value.hint == ("Add app/requirements.txt (an empty one if the service needs only the standard "
                                 "library).")


def test_the_venv_key_covers_the_spec_and_what_it_includes(tmp_path: Path) -> None:
    _write(tmp_path, {"app/requirements.txt": "-r base.txt\n", "app/base.txt": "psycopg==3.3.9\n", "app/x.py": ""})
    before = deps.key(deps.find(tmp_path, "app"))
    (tmp_path / "app" / "x.py").write_text("print('code only')\n")
    assert deps.key(deps.find(tmp_path, "app")) == before  # a code change reuses the venv
    (tmp_path / "app" / "base.txt").write_text("psycopg==3.3.8\n")
    assert deps.key(deps.find(tmp_path, "app")) != before


POETRY_LOCK = '''
[[package]]
name = "psycopg"
version = "3.3.9"
optional = false
groups = ["main"]
markers = {main = "python_version >= \\"3.11\\""}
files = [
    {file = "psycopg-3.3.9.tar.gz", hash = "sha256:aa"},
    {file = "psycopg-3.3.9-py3-none-any.whl", hash = "sha256:bb"},
]

[[package]]
name = "pytest"
version = "8.0.0"
groups = ["dev"]
files = [{file = "pytest-8.0.0.tar.gz", hash = "sha256:cc"}]

[[package]]
name = "ujson"
version = "5.0"
optional = true
groups = ["main"]
files = [{file = "ujson-5.0.tar.gz", hash = "sha256:dd"}]

[[package]]
name = "internal"
version = "1.0"
category = "main"
files = [{file = "internal-1.0.tar.gz", hash = "sha256:ee"}]
[package.source]
type = "legacy"
url = "https://pypi.example.com/simple"
reference = "corp"
'''


def test_a_poetry_lock_becomes_its_hash_checked_main_group(tmp_path: Path) -> None:
    lines, hashed = deps.poetry_requirements(_write(tmp_path, {"poetry.lock": POETRY_LOCK}) / "poetry.lock")
    assert hashed
    assert lines == [
        "--extra-index-url https://pypi.example.com/simple",
        'psycopg==3.3.9 ; python_version >= "3.11" --hash=sha256:aa --hash=sha256:bb',
        "internal==1.0 --hash=sha256:ee",
    ]


def test_a_git_dependency_turns_hash_checking_off_for_all(tmp_path: Path) -> None:
    lock = POETRY_LOCK + '''
[[package]]
name = "lib"
version = "0.1"
groups = ["main"]
files = []
[package.source]
type = "git"
url = "https://github.com/example/lib.git"
reference = "main"
resolved_reference = "0123abc"
'''
    lines, hashed = deps.poetry_requirements(_write(tmp_path, {"poetry.lock": lock}) / "poetry.lock")
    assert not hashed and lines[-1] == "lib @ git+https://github.com/example/lib.git@0123abc"
    assert not any("--hash" in line for line in lines)


def _another_python() -> str | None:
    """A Python an image exists for, on this machine, other than the one running the tests."""
    return next((m for m in ("3.12", "3.11", "3.13", "3.10") if m != interpreters.running() and interpreters.find(m)),
                None)


def test_the_venv_is_built_with_the_python_the_app_pins(tmp_path: Path) -> None:
    minor = _another_python()
    if minor is None:
        pytest.skip("only one Python on this machine")
    _write(tmp_path, {"app/requirements.txt": "", "app/.python-version": f"{minor}\n"})
    spec = deps.find(tmp_path, "app")
    venv = build.ensure_venv(spec, tmp_path / "venvs")
    assert (venv / "bin" / f"python{minor}").exists()  # venv names the interpreter it was made from
    assert deps.key(spec) != deps.key(deps.DepSpec(spec.kind, spec.file, spec.root, spec.project))


def test_a_declared_python_not_on_the_machine_is_one_line_naming_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    minor = next(m for m in ("3.10", "3.13") if m != interpreters.running())
    empty = tmp_path / "empty"
    empty.mkdir()
    for name, value in (("PATH", str(empty)), ("PYENV_ROOT", str(empty)), ("UV_PYTHON_INSTALL_DIR", str(empty))):
        monkeypatch.setenv(name, value)
    interpreters.find.cache_clear()
    try:
        _write(tmp_path, {"app/requirements.txt": "django\n", "app/runtime.txt": f"python-{minor}.2\n"})
        spec = deps.find(tmp_path, "app")
        with pytest.raises(PreconditionError) as caught:
            build.ensure_venv(spec, tmp_path / "venvs")
    finally:
        interpreters.find.cache_clear()
    assert caught.value.message == (f"the app declares Python {minor} (app/runtime.txt), and there is no Python "
                                    f"{minor} on this machine (PATH, pyenv, uv)")
    assert caught.value.hint == (f"Install it: uv python install {minor} (or your system's python{minor} package), "
                                 "then run again.")
    assert not (tmp_path / "venvs" / deps.key(spec)[:16]).exists()
