"""The dependency manager of the service, the packages it depends on, and its Python version.

A lock file wins over a bare manifest: uv.lock (uv, possibly a workspace whose member is the service),
poetry.lock (Poetry), then requirements.txt (pip), then a PEP 621 pyproject.toml without a lock. Each is
looked for from the service's directory up to the repository root.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Literal

from deployctl import pyversion
from deployctl.scaffold.repo import Repo

Manager = Literal["uv", "poetry", "pip", "pep621"]
DEFAULT_PYTHON = pyversion.DEFAULT
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOCK_NAME = re.compile(r'^name = "([^"]+)"', re.M)


@dataclass(frozen=True)
class Deps:
    manager: Manager | None
    root: str = "."  # the directory of the lock or manifest (the build's context for the install)
    manifest: str | None = None  # the file the manager reads: uv.lock, poetry.lock, requirements.txt, pyproject.toml
    package: str | None = None  # uv workspace: the service's member project name (uv sync --package)
    members: tuple[str, ...] = ()  # uv workspace: every member directory (uv needs their pyproject.toml)
    readme: str | None = None  # pep621: the readme the build needs beside pyproject.toml
    names: frozenset[str] = field(default_factory=frozenset)  # canonical names of the packages installed
    python: str = DEFAULT_PYTHON
    python_from: str = "default"

    def has(self, *names: str) -> bool:
        return any(canonical(n) in self.names for n in names)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def detect(repo: Repo, app_dir: str) -> Deps:
    """The manager that installs the service whose code lives in *app_dir*."""
    chain = _up(app_dir)
    for directory in chain:
        if repo.exists(_join(directory, "uv.lock")) and repo.exists(_join(directory, "pyproject.toml")):
            return _uv(repo, directory, chain)
        if repo.exists(_join(directory, "poetry.lock")) and repo.exists(_join(directory, "pyproject.toml")):
            return _with_python(repo, Deps("poetry", directory, _join(directory, "poetry.lock"),
                                           names=_lock_names(repo, _join(directory, "poetry.lock"))), directory)
    for directory in chain:
        req = _join(directory, "requirements.txt")
        if repo.exists(req):
            return _with_python(repo, Deps("pip", directory, req, names=_requirement_names(repo, req)), directory)
    for directory in chain:
        project = _project(repo, directory)
        if project is not None:
            manifest = _join(directory, "pyproject.toml")
            readme = project.get("readme")
            readme = _join(directory, readme) if isinstance(readme, str) and repo.exists(_join(directory, readme)) \
                else None
            names = frozenset(_names(project.get("dependencies", [])))
            return _with_python(repo, Deps("pep621", directory, manifest, readme=readme, names=names), directory)
    return _with_python(repo, Deps(None), chain[0])


def _uv(repo: Repo, directory: str, chain: list[str]) -> Deps:
    lock = _join(directory, "uv.lock")
    members = _members(repo, directory)
    # the service's own project: the nearest pyproject.toml with [project] from its directory up to the lock
    own = next((d for d in chain[: chain.index(directory) + 1] if _project(repo, d) is not None), directory)
    package = None
    if own != directory:
        project = _project(repo, own) or {}
        package = str(project.get("name")) if project.get("name") else None
    deps = Deps("uv", directory, lock, package=package, members=members, names=_lock_names(repo, lock))
    return _with_python(repo, deps, own)


def _members(repo: Repo, directory: str) -> tuple[str, ...]:
    config = repo.toml(_join(directory, "pyproject.toml")) or {}
    workspace = config.get("tool", {}).get("uv", {}).get("workspace", {})
    patterns = [_join(directory, p) for p in workspace.get("members", [])]
    excluded = [_join(directory, p) for p in workspace.get("exclude", [])]
    found = sorted(
        d for d in (str(PurePosixPath(f).parent) for f in repo.named("pyproject.toml"))
        if any(fnmatch.fnmatch(d, p) for p in patterns) and not any(fnmatch.fnmatch(d, p) for p in excluded)
    )
    return tuple(found)


def _project(repo: Repo, directory: str) -> dict[str, Any] | None:
    path = _join(directory, "pyproject.toml")
    if not repo.exists(path):
        return None
    project = (repo.toml(path) or {}).get("project")
    return project if isinstance(project, dict) else None


def _with_python(repo: Repo, deps: Deps, project_dir: str) -> Deps:
    """The Python the app declares (deployctl.pyversion, the local target's reading too), else the default."""
    def read(rel: str) -> str | None:
        return repo.text(rel) if repo.exists(rel) else None

    found = pyversion.declared(read, (*_up(project_dir), deps.root))
    return replace(deps, python=found.minor, python_from=found.source) if found else deps


def _lock_names(repo: Repo, lock: str) -> frozenset[str]:
    return frozenset(canonical(n) for n in _LOCK_NAME.findall(repo.text(lock) or ""))


def _requirement_names(repo: Repo, path: str, depth: int = 0) -> frozenset[str]:
    names: set[str] = set()
    for line in (repo.text(path) or "").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")) and depth < 3:
            included = _join(str(PurePosixPath(path).parent), line.split(None, 1)[1].strip())
            names |= _requirement_names(repo, included, depth + 1)
        elif line and not line.startswith("-"):
            names |= _names([line])
    return frozenset(names)


def _names(requirements: list[Any]) -> set[str]:
    found = set()
    for req in requirements:
        m = _NAME.match(str(req))
        if m:
            found.add(canonical(m.group(1)))
    return found


def _up(directory: str) -> list[str]:
    """*directory* and each of its parents up to the root ("."), nearest first."""
    p = PurePosixPath(directory)
    chain = [str(p)]
    while str(p) != ".":
        p = p.parent
        chain.append(str(p))
    return chain


def _join(directory: str, name: str) -> str:
    return name if directory in (".", "") else f"{directory}/{name}"
