"""``deployctl init``: detect how a Python web service is built, served and migrated, and write the files
that release it with deployctl (stacks, Dockerfile.cloudrun, .dockerignore, cloudbuild.yaml, Pulumi.yaml
and the two-line infra/__main__.py that runs the Pulumi program installed with deployctl).

Rule: detection never imports or runs the user's code (``ast`` and ``tomllib`` only) and stays within a
second on a repository of a thousand files; nothing is written over an existing file unless forced.

    repo.py        one walk of the repository, files parsed once on demand
    deps.py        the dependency manager, the packages and the Python version
    apps.py        the framework, the application object, the command and the port
    routes.py      health endpoints, with the prefixes their routers are mounted under
    envvars.py     the environment variables read: database, secrets, other
    migrations.py  Alembic, Django or Flask-Migrate, and the extensions the migrations create
    detect.py      all of the above as one Detection
    stacks.py, files.py   what is written;  report.py  what is said
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployctl.scaffold.detect import Detection, detect
from deployctl.scaffold.repo import Repo

__all__ = ["Detection", "Scaffold", "detect", "plan", "write"]


@dataclass(frozen=True)
class Scaffold:
    detection: Detection
    files: dict[str, str]  # relative path -> text

    def existing(self, root: Path) -> list[str]:
        return [rel for rel in self.files if (root / rel).exists()]


def plan(root: Path, shared: bool = True) -> Scaffold:
    """Detect and render, writing nothing. *shared*: Pulumi.yaml (which holds the app's definition) will be
    written; when it will not (the project has its own and no --force), each stack holds the whole definition."""
    import gc

    from deployctl.scaffold import files, stacks

    # Detection keeps every parsed tree (hundreds of thousands of acyclic objects) until it is done; the
    # cyclic collector would walk them over and over for nothing.
    gc.disable()
    try:
        repo = Repo(root)
        detection = detect(repo)
        rendered = files.render(detection, repo) | stacks.render(detection, shared)
    finally:
        gc.enable()
    return Scaffold(detection, rendered)


def write(root: Path, scaffold: Scaffold, force: bool) -> tuple[list[str], list[str]]:
    """Write the files; (written, skipped) — an existing file is skipped unless *force*."""
    written, skipped = [], []
    for rel, text in scaffold.files.items():
        path = root / rel
        if path.exists() and not force:
            skipped.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.init-tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(rel)
    return written, skipped
