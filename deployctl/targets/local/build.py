"""Local builds: a content-addressed copy of the service source plus a cached dependency venv.

Rule: the source hash covers every file git would ship (tracked and untracked-but-not-ignored; every
file outside a git checkout, less caches), the dependency spec's files and the interpreter version; an
artifact directory is written under a temporary name and renamed into place, so a half-built artifact is
never used. The venv holds the third-party dependencies only and is keyed by the spec's files (deps.py:
uv.lock, poetry.lock, requirements.txt or pyproject.toml), so a code-only change reuses it; the app's own
project, when it is a package, is installed into the artifact itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from deployctl.errors import DeployctlError, PreconditionError
from deployctl.joblog import explain
from deployctl.pipeline.model import Artifact
from deployctl.targets.local import deps

_SKIP_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"}
MANIFEST = ".deployctl-artifact.json"


def source_files(root: Path, source: str) -> list[str]:
    """Paths (relative to *root*) of the files that make up *source*, sorted."""
    src = root / source
    if not src.is_dir():
        raise PreconditionError(f"service source {source}/ does not exist under {root.name}/",
                                "Check `source:` of the service in the stack file.")
    listed = _git_files(root, source)
    if listed is None:
        listed = [
            str(p.relative_to(root))
            for p in src.rglob("*")
            if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(root).parts) and p.suffix != ".pyc"
        ]
    return sorted(f for f in listed if (root / f).is_file())


def _git_files(root: Path, source: str) -> list[str] | None:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", source],
            cwd=root, capture_output=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    files = [f for f in out.stdout.decode().split("\0") if f]
    return [f for f in files if not _SKIP_DIRS.intersection(Path(f).parts)] or None


def deps_hash(root: Path, source: str) -> str:
    try:
        return deps.key(deps.find(root, source))
    except DeployctlError as exc:  # no spec, or an unreadable one: the build says so (planning stays read-only)
        return hashlib.sha256(f"unusable\0{exc.message}".encode()).hexdigest()


def source_hash(root: Path, source: str) -> str:
    digest = hashlib.sha256()
    for rel in source_files(root, source):
        path = root / rel
        digest.update(rel.encode() + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(deps_hash(root, source).encode())
    return digest.hexdigest()


def artifact_ref(service: str, source_hash_: str) -> str:
    return f"{service}-{source_hash_[:12]}"


def find(artifacts_dir: Path, service: str, source_hash_: str) -> Artifact | None:
    ref = artifact_ref(service, source_hash_)
    if not (artifacts_dir / ref / MANIFEST).is_file():
        return None
    return Artifact(service, source_hash_, ref, f"sha256:{source_hash_}")


def build(root: Path, source: str, service: str, source_hash_: str, artifacts_dir: Path, venvs: Path) -> Artifact:
    spec = deps.find(root, source)
    venv = ensure_venv(spec, venvs)
    ref = artifact_ref(service, source_hash_)
    final = artifacts_dir / ref
    if not (final / MANIFEST).is_file():
        tmp = artifacts_dir / f".{ref}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for rel in source_files(root, source):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
        site = None
        project = deps.own_project(spec, root / source)
        if project is not None:
            deps.install_project(spec, venv, tmp / project.relative_to(root.resolve()), tmp / deps.SITE)
            site = deps.SITE
        manifest = {"service": service, "source_hash": source_hash_, "venv": str(venv), "source": source,
                    "deps": spec.shown, "site": site}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return Artifact(service, source_hash_, ref, f"sha256:{source_hash_}")


def manifest_of(artifacts_dir: Path, ref: str) -> dict[str, str]:
    """What the artifact was built with: its venv, its source directory, its installed project (``site``)."""
    try:
        data: dict[str, str] = json.loads((artifacts_dir / ref / MANIFEST).read_text())
    except FileNotFoundError:
        raise DeployctlError(f"artifact {ref} is gone from this machine", "Run `deployctl up` to rebuild it.") from None
    return data


def ensure_venv(spec: deps.DepSpec, venvs: Path) -> Path:
    """The dependency venv for this spec, created once (under a file lock) and reused."""
    key = deps.key(spec)[:16]
    venv = venvs / key
    if (venv / ".complete").is_file():
        return venv
    venvs.mkdir(parents=True, exist_ok=True)
    with open(venvs / f".{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".complete").is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _minor, python = deps.python(spec)
        out = subprocess.run([python, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise DeployctlError(f"could not create the dependency venv: {explain(out.stderr)}",
                                 f"Check that {python} can make venvs (python3-venv) and {venvs} is writable.")
        deps.install(spec, venv)
        (venv / ".complete").write_text(key)
    return venv
