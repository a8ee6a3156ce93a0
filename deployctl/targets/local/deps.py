"""How a local build installs a service's dependencies: the way the app's own tooling would.

Rules:
- The dependency spec is looked for from the service's source up to the project root, the nearest
  directory first: ``uv.lock`` (``uv sync --frozen``), ``poetry.lock`` (its pinned main group), or
  ``requirements.txt`` (``pip install -r``). Only when there is none of those does a ``pyproject.toml``
  with a ``[project]`` table count (its dependencies, resolved by pip). No spec at all, or one that does not
  install, is a build error with one line and a hint, never a job that fails later.
- Third-party dependencies go into the shared venv, keyed by the spec's files (and the Python version), so
  a code change reuses it. The app's own project, when it is a package, is installed per artifact into
  ``.deployctl-site`` (without its dependencies, from the artifact's copy): the shared venv never holds the
  app's code, so no revision runs another revision's code.
- The venv is made with the Python the app declares (deployctl.pyversion: ``.python-version``, ``runtime.txt``,
  ``requires-python``; the same reading init uses for the image), found on this machine (interpreters.py);
  deployctl's own Python only when the app declares none. A declared version that is not on the machine is one
  line naming it and how to install it.
- Hash-checked wherever the spec has hashes: a requirements file with ``--hash`` is installed with
  ``--require-hashes``; a poetry lock's files carry hashes; uv checks uv.lock's hashes itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deployctl import pyversion
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.joblog import explain
from deployctl.targets.local import interpreters

Kind = Literal["uv", "poetry", "requirements", "pyproject"]
_FILES: tuple[tuple[str, Kind], ...] = (
    ("uv.lock", "uv"), ("poetry.lock", "poetry"), ("requirements.txt", "requirements"),
)
SITE = ".deployctl-site"  # the app's own installed project, inside an artifact
_NESTED = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", re.M)


@dataclass(frozen=True)
class DepSpec:
    """What a service's dependencies are installed from, and its own project (the pyproject.toml nearest
    to the source), if any."""

    kind: Kind
    file: Path
    root: Path
    project: Path | None = None
    python: pyversion.Declared | None = None  # what the app declares; None: deployctl's own Python

    @property
    def shown(self) -> str:
        return self.file.relative_to(self.root).as_posix()

    def inputs(self) -> list[Path]:
        """The files whose content decides what the shared venv holds."""
        files = [self.file]
        if self.kind in ("uv", "poetry"):
            files.append(self.file.parent / "pyproject.toml")
        if self.kind == "requirements":
            files += _nested(self.file, set())
        if self.project is not None:
            files.append(self.project / "pyproject.toml")
        return sorted({f for f in files if f.is_file()})


def find(root: Path, source: str) -> DepSpec:
    """The dependency spec of *source* (see the module's rules); PreconditionError when there is none."""
    src = (root / source).resolve()
    top = root.resolve()
    chain = [src, *(p for p in src.parents if p.is_relative_to(top))]
    project = next((d for d in chain if (d / "pyproject.toml").is_file()), None)
    python = _declared(top, chain)
    for directory in chain:
        for name, kind in _FILES:
            if (directory / name).is_file():
                return DepSpec(kind, directory / name, top, project, python)
    if project is not None and "project" in _toml(project / "pyproject.toml"):
        return DepSpec("pyproject", project / "pyproject.toml", top, project, python)
    raise PreconditionError(
        f"no dependency spec for {source}/: no uv.lock, poetry.lock or requirements.txt from {source}/ up to "
        "the project root, and no pyproject.toml with a [project] table",
        f"Add {source}/requirements.txt (an empty one if the service needs only the standard library).",
    )


def _declared(top: Path, chain: list[Path]) -> pyversion.Declared | None:
    def read(rel: str) -> str | None:
        path = top / rel
        return path.read_text(errors="replace") if path.is_file() else None

    return pyversion.declared(read, [d.relative_to(top).as_posix() for d in chain])


def python(spec: DepSpec) -> tuple[str, str]:
    """(minor, interpreter path): the declared version found on this machine, the first of those a range
    allows; deployctl's own Python when nothing is declared. PreconditionError when none is here."""
    if spec.python is None:
        return interpreters.running(), sys.executable
    for minor in spec.python.allowed:
        found = interpreters.find(minor)
        if found:
            return minor, found
    minor = spec.python.minor
    raise PreconditionError(
        f"the app declares Python {minor} ({spec.python.source}), and there is no Python {minor} on this "
        "machine (PATH, pyenv, uv)",
        f"Install it: uv python install {minor} (or your system's python{minor} package), then run again.")


def _minor(spec: DepSpec) -> str:
    try:
        return python(spec)[0]
    except PreconditionError:
        return spec.python.minor if spec.python else interpreters.running()


VENV_LAYOUT = 2


def key(spec: DepSpec) -> str:
    """The shared venv's key: the kind of spec, its files' content and the Python version."""
    # VENV_LAYOUT: bump when what an install leaves in the venv changes (2: compiled bytecode)
    digest = hashlib.sha256(f"{VENV_LAYOUT}\0{spec.kind}\0py{_minor(spec)}".encode())
    for path in spec.inputs():
        digest.update(path.relative_to(spec.root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def install(spec: DepSpec, venv: Path) -> None:
    """Install the third-party dependencies into *venv* (a fresh venv), without the app's own project."""
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if spec.kind == "uv":
        cmd = [uv(), "sync", "--frozen", "--no-dev", "--no-install-workspace", "--inexact", "--python", python]
        member = _member(spec)
        _run([*cmd, *(["--package", member] if member else [])], spec, cwd=spec.file.parent,
             env={"UV_PROJECT_ENVIRONMENT": str(venv)})
    elif spec.kind == "requirements":
        checked = ["--require-hashes"] if "--hash" in spec.file.read_text() else []
        _run([*pip, *checked, "-r", str(spec.file)], spec, cwd=spec.file.parent)
    elif spec.kind == "poetry":
        lines, hashed = poetry_requirements(spec.file)
        with tempfile.TemporaryDirectory(prefix="deployctl-poetry-") as tmp:
            pinned = Path(tmp) / "requirements.txt"
            pinned.write_text("".join(f"{line}\n" for line in lines))
            flags = ["--no-deps", *(["--require-hashes"] if hashed else [])]
            _run([*pip, *flags, "-r", str(pinned)], spec, cwd=spec.file.parent)
    else:
        dependencies = _pep621_dependencies(spec)
        if dependencies:
            _run([*pip, *dependencies], spec, cwd=spec.file.parent)
    compile_bytecode(venv, spec)


def compile_bytecode(venv: Path, spec: DepSpec) -> None:
    """Bytecode for every installed module, once. Revisions and jobs run with PYTHONDONTWRITEBYTECODE=1, as
    in the image, and pip and uv write none when the environment sets it too: without this, every start
    compiles the whole dependency tree again (a second or more per revision and job)."""
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    _run([python, "-m", "compileall", "-q", "-j", "0", where], spec, cwd=venv, what="compile the dependencies",
         env={"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": ""})  # beside the modules, where they look


def own_project(spec: DepSpec, source_dir: Path) -> Path | None:
    """The service's own project directory when it is a package inside the source (else None).

    A project is a package when it declares a [build-system] (uv's rule), unless ``tool.uv.package`` or
    poetry's ``package-mode`` says otherwise. A project outside the source is not in the artifact, so it
    is not installed (its code is still importable from ``workdir``)."""
    project = spec.project
    if project is None or not project.resolve().is_relative_to(source_dir.resolve()):
        return None
    data = _toml(project / "pyproject.toml")
    tool = data.get("tool", {})
    packaged = tool.get("uv", {}).get("package")
    if packaged is None:
        packaged = tool.get("poetry", {}).get("package-mode", "build-system" in data)
    return project if packaged else None


def install_project(spec: DepSpec, venv: Path, project: Path, target: Path) -> None:
    """Install *project* (the artifact's copy) without dependencies into *target*, built from a scratch copy
    so that no build output lands in the artifact."""
    with tempfile.TemporaryDirectory(prefix="deployctl-project-") as tmp:
        copy = Path(tmp) / project.name
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns(SITE))
        python = str(venv / "bin" / "python")
        if spec.kind == "uv" or _uv_here():  # uv caches the build backend: a code-only build takes a second
            cmd = [uv(), "pip", "install", "--quiet", "--no-deps", "--python", python, "--target", str(target)]
        else:
            cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--target",
                   str(target)]
        _run([*cmd, str(copy)], spec, cwd=Path(tmp), what=f"install the project in {project.name}/")


def _uv_here() -> bool:
    return (Path(sys.executable).parent / "uv").is_file() or shutil.which("uv") is not None


def uv() -> str:
    """uv: the one beside this Python (deployctl's own venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise PreconditionError("this project is locked with uv.lock, and uv is not installed",
                                "Install it next to deployctl: pip install uv")
    return found


def poetry_requirements(lock: Path) -> tuple[list[str], bool]:
    """The main group of a poetry.lock as pinned requirement lines, and whether they carry hashes.

    Like ``poetry install --only main --no-root``: exactly the locked set, nothing resolved anew. Hashes are
    written only when every package comes from an index (pip checks all of them or none)."""
    try:
        packages = [p for p in _toml(lock).get("package", []) if _main(p)]
    except (KeyError, TypeError, AttributeError):
        raise DeployctlError(f"{lock.name} is not a poetry lock file", "Run `poetry lock` to rewrite it.") from None
    indexes = sorted({p["source"]["url"] for p in packages if p.get("source", {}).get("type") == "legacy"})
    hashed = all(p.get("source", {}).get("type") in (None, "legacy") and p.get("files") for p in packages)
    lines = [f"--extra-index-url {url}" for url in indexes]
    for package in packages:
        line = _poetry_line(package, lock.parent)
        marker = package.get("markers")
        marker = marker.get("main") if isinstance(marker, dict) else marker
        line += f" ; {marker}" if marker else ""
        if hashed:
            line += "".join(f" --hash={f['hash']}" for f in package["files"])
        lines.append(line)
    return lines, hashed


def _main(package: dict[str, Any]) -> bool:
    groups = package.get("groups") or [package.get("category", "main")]  # lock format 2 / format 1
    return "main" in groups and not package.get("optional", False)


def _poetry_line(package: dict[str, Any], base: Path) -> str:
    name, source = package["name"], package.get("source", {})
    kind = source.get("type")
    if kind in (None, "legacy"):
        return f"{name}=={package['version']}"
    if kind == "git":
        return f"{name} @ git+{source['url']}@{source.get('resolved_reference') or source['reference']}"
    if kind in ("file", "directory"):
        return f"{name} @ {(base / source['url']).resolve().as_uri()}"
    return f"{name} @ {source['url']}"


def _pep621_dependencies(spec: DepSpec) -> list[str]:
    project = _toml(spec.file).get("project", {})
    if "dependencies" in project.get("dynamic", []):
        raise PreconditionError(f"{spec.shown} declares its dependencies as dynamic, so they cannot be read",
                                "Lock them (uv lock) or list them in requirements.txt.")
    return list(project.get("dependencies", []))


def _member(spec: DepSpec) -> str | None:
    """The workspace member to sync: the service's own project, unless it is the lock's root project."""
    if spec.project is None or spec.project == spec.file.parent:
        return None
    name = _toml(spec.project / "pyproject.toml").get("project", {}).get("name")
    return str(name) if name else None


def _nested(requirements: Path, seen: set[Path]) -> list[Path]:
    """Files a requirements file includes with -r/-c (their content is part of the spec too)."""
    found = []
    for match in _NESTED.finditer(requirements.read_text()):
        path = (requirements.parent / match.group(1)).resolve()
        if path.is_file() and path not in seen:
            seen.add(path)
            found += [path, *_nested(path, seen)]
    return found


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PreconditionError(f"{path.name} is not valid TOML: {exc}", f"Fix {path}.") from None


def _run(cmd: list[str], spec: DepSpec, *, cwd: Path, env: dict[str, str] | None = None,
         what: str | None = None) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    environ.update(UV_PYTHON_DOWNLOADS="never", **(env or {}))
    out = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        why = explain(out.stderr) or explain(out.stdout) or f"exit code {out.returncode}"
        raise DeployctlError(f"could not {what or f'install {spec.shown}'}: {why}",
                             _hint(spec, out.stdout + out.stderr))


def _hint(spec: DepSpec, output: str) -> str:
    """A package that refuses this Python is the app's Python, not its requirements or the network."""
    if re.search(r"requires-python|requires a different python|python_version", output, re.I):
        minor = _minor(spec)
        source = f"({spec.python.source})" if spec.python else "(deployctl's own: the app declares none)"
        return (f"The environment runs Python {minor} {source} and a dependency does not support it: declare the "
                "app's Python in .python-version or requires-python.")
    return f"Fix {spec.shown}, or check your network access."
