"""The files besides the stacks: Pulumi.yaml and its two-line infra entry, the image, its build context
and the Cloud Build pipeline.

Rule: the Dockerfile installs the service the way its own tooling does (uv sync --frozen from uv.lock,
poetry export from poetry.lock, pip -r requirements.txt, pip install . for a PEP 621 project), runs as a
non-root user on $PORT, and COPYs only paths that exist in the repository.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import PurePosixPath

from deployctl import __version__
from deployctl.pyversion import PYTHONS
from deployctl.scaffold.detect import SERVICE, Detection
from deployctl.scaffold.migrations import shell_line
from deployctl.scaffold.repo import NOT_APP_DIRS, Repo
from deployctl.scaffold.stacks import REGION, project_config

UV_VERSION = "0.13.8"  # the uv deployctl's own lock pins (pyproject.toml, group tools)
POETRY = "poetry==1.8.5 poetry-plugin-export==1.8.0"
DATA_DIRS = ("templates", "static", "locale", "migrations")  # shipped with the code even without .py files
NEVER_COPIED = NOT_APP_DIRS | {"infra", "stacks", "scripts"}

INFRA_MAIN = '''"""Pulumi's entry (``main: infra/`` in Pulumi.yaml): the program installed with deployctl."""

from deployctl.infra.main import run

run()
'''

PULUMI_YAML = """name: {name}
description: {name} on Cloud Run, released by deployctl (written by `deployctl init`)
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: .venv
main: infra/
stackConfigDir: stacks
"""

RUNTIME = """
FROM python:{image}-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PORT={port}
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
WORKDIR /srv
COPY --from=builder /opt/venv /opt/venv
# the code stays root-owned: the service can read it, not rewrite it
{copies}
{workdir}USER 10001
EXPOSE {port}
{job}CMD {cmd}
"""


def render(d: Detection, repo: Repo) -> dict[str, str]:
    sources = copied_sources(d, repo)
    return {
        "Pulumi.yaml": PULUMI_YAML.format(name=d.name) + project_config(d),
        "infra/__main__.py": INFRA_MAIN,
        "Dockerfile.cloudrun": dockerfile(d, sources),
        ".dockerignore": dockerignore(sources),
        "cloudbuild.yaml": cloudbuild(),
    }


def copied_sources(d: Detection, repo: Repo) -> list[str]:
    """What the image holds of the repository: the service's directory, or at the root the code in it."""
    if d.source != ".":
        return [f"{d.source}/"]
    picked = []
    for name in sorted({f.split("/", 1)[0] for f in repo.files}):
        if repo.is_dir(name):
            if name not in NEVER_COPIED and (name in DATA_DIRS or any(
                    f.startswith(f"{name}/") and f.endswith(".py") for f in repo.files)):
                picked.append(f"{name}/")
        elif name.endswith(".py") or name in ("alembic.ini", "gunicorn.conf.py"):
            picked.append(name)
    return picked


def dockerfile(d: Detection, sources: list[str]) -> str:
    image = PYTHONS[d.deps.python]
    head = (f"# {d.name}'s image for Cloud Run, written by `deployctl init`. Build context: the repository root.\n"
            "#   docker build -f Dockerfile.cloudrun -t IMAGE .\n"
            "# Stage 1 installs the locked dependencies into /opt/venv; stage 2 copies it into a slim runtime\n"
            "# that runs as a non-root user and listens on $PORT.\n\n"
            f"FROM python:{image}-slim-bookworm AS builder\n")
    job = f"# migrate job: {shell_line(d.migrations.command, d.migrations.workdir)}\n" if d.migrations else ""
    # the stack's workdir: where the command (and the jobs) run, as the local target runs them
    workdir = f"WORKDIR /srv/{d.workdir}\n" if d.workdir != "." and d.service_workdir is not None else ""
    copies = "\n".join(_copy(s) for s in sources)
    cmd = json.dumps(d.command)  # exec form
    return head + _builder(d, sources) + RUNTIME.format(image=image, port=d.port, copies=copies, job=job, cmd=cmd,
                                                                workdir=workdir)


def _builder(d: Detection, sources: list[str]) -> str:
    manager, root = d.deps.manager, d.deps.root
    at = "" if root == "." else f"{root}/"
    if manager == "uv":
        return _uv(d, sources, at)
    if manager == "poetry":
        return ("ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
                f"RUN pip install --no-cache-dir {POETRY}\n"
                "WORKDIR /build\n"
                f"COPY {at}pyproject.toml {at}poetry.lock ./\n"
                "# the locked set, every file hash-checked; the service itself runs from its source\n"
                "RUN poetry export --format requirements.txt --output requirements.txt \\\n"
                "    && python -m venv /opt/venv \\\n"
                "    && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r requirements.txt\n")
    if manager == "pip":
        manifest = d.deps.manifest or "requirements.txt"
        return ("ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
                "WORKDIR /build\n"
                f"COPY {manifest} ./requirements.txt\n"
                "RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt\n")
    manifests = " ".join(p for p in (f"{at}pyproject.toml", d.deps.readme) if p)
    body = ("ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
            "WORKDIR /build\n")
    if manager == "pep621":
        body += f"COPY {manifests} ./\n" + "".join(_copy(s) + "\n" for s in sources if s != "pyproject.toml")
        body += "# no lock: pip resolves the project's declared dependencies at build time\n"
        body += "RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .\n"
    else:
        body += "# no dependency manifest found: add your dependencies' install here\nRUN python -m venv /opt/venv\n"
    return body


def _uv(d: Detection, sources: list[str], at: str) -> str:
    package = f" --package {d.deps.package}" if d.deps.package else ""
    uv = "uv" if not at else f"uv --directory {at.rstrip('/')}"
    skip = "--no-install-workspace" if d.deps.members else "--no-install-project"
    lines = ["ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv",
             f"RUN pip install --no-cache-dir uv=={UV_VERSION}",
             "WORKDIR /srv",
             f"COPY {at}pyproject.toml {at}uv.lock ./{at}"]
    lines += [f"COPY {m}/pyproject.toml ./{m}/" for m in d.deps.members]
    lines += ["# the dependencies first (cached while the lock is unchanged), exactly as uv.lock pins them",
              f"RUN {uv} sync --frozen --no-dev {skip}{package}"]
    lines += [_copy(s) for s in sources]
    lines += [f"RUN {uv} sync --frozen --no-dev --no-editable{package}"]
    return "\n".join(lines) + "\n"


def _copy(source: str) -> str:
    return f"COPY {source} ./{source}" if source.endswith("/") else f"COPY {source} ./"


IGNORED = (".git", ".github", ".venv", "venv", ".deployctl", ".env", ".env.*", "**/__pycache__", "**/*.pyc",
           ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules", "*.egg-info", "build", "dist", "tests",
           "**/tests", "docs", "stacks", "infra", "Pulumi*.yaml", "cloudbuild.yaml", "Dockerfile*")


def dockerignore(sources: list[str]) -> str:
    """Everything but the service out of the build context (never a path the Dockerfile copies)."""
    kept = [p for p in IGNORED if not any(fnmatch.fnmatch(s.rstrip("/"), p) or
                                          PurePosixPath(s.rstrip("/")).match(p) for s in sources)]
    return ("# Written by `deployctl init`: keep tests, docs, local state and anything secret out of the image.\n"
            + "\n".join(kept) + "\n")


CLOUDBUILD = """# Cloud Build: build the image, push it, release exactly that digest with `deployctl up`.
# Written by `deployctl init`. Add your own checks (tests, lint) as steps before `push`.
# The release step installs deployctl into .venv, where Pulumi.yaml says the program runs; set
# _DEPLOYCTL to where you install deployctl from. The build's service account needs the roles
# `deployctl bootstrap` grants.
steps:
  - id: build
    name: gcr.io/cloud-builders/docker
    entrypoint: bash
    args:
      - -c
      - |
        set -euo pipefail
        IMAGE=$_REGION-docker.pkg.dev/$PROJECT_ID/$_REPOSITORY/{service}
        docker pull "$${{IMAGE}}:latest" || true
        docker build -f Dockerfile.cloudrun \\
          --cache-from "$${{IMAGE}}:latest" \\
          --build-arg BUILDKIT_INLINE_CACHE=1 \\
          -t "$${{IMAGE}}:$COMMIT_SHA" \\
          -t "$${{IMAGE}}:latest" \\
          .

  - id: push
    name: gcr.io/cloud-builders/docker
    waitFor: ['build']
    entrypoint: bash
    args:
      - -c
      - |
        set -euo pipefail
        IMAGE=$_REGION-docker.pkg.dev/$PROJECT_ID/$_REPOSITORY/{service}
        docker push --all-tags "$${{IMAGE}}"
        docker inspect --format='{{{{index .RepoDigests 0}}}}' "$${{IMAGE}}:$COMMIT_SHA" > /workspace/image.txt
        echo "pushed $(cat /workspace/image.txt)"

  - id: release
    name: pulumi/pulumi-python-3.11:$_PULUMI_VERSION
    waitFor: ['push']
    entrypoint: bash
    args:
      - -c
      - |
        set -euo pipefail
        python -m venv .venv
        .venv/bin/pip install --no-cache-dir "$_DEPLOYCTL"
        .venv/bin/deployctl up $_STACK --image "$(cat /workspace/image.txt)"

substitutions:
  _STACK: staging
  _REGION: {region}
  _REPOSITORY: staging-deployctl  # naming.repository: <stack>-<gcp.repository>; the trigger sets its own
  _PULUMI_VERSION: 3.140.0
  _DEPLOYCTL: deployctl[gcp]=={version}

options:
  logging: CLOUD_LOGGING_ONLY

timeout: 1800s
"""


def cloudbuild() -> str:
    return CLOUDBUILD.format(service=SERVICE, region=REGION, version=__version__)
