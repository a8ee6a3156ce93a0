"""Benchmark for ``deployctl init``.

Budget: ``deployctl init --yes --force`` (a whole command: start-up, detection, rendering, validating the
three stacks, writing eight files) within 1 s on a repository of 1,000 files: the FastAPI fixture's
backend grown to 600 route modules, 150 migrations and 240 other files, beside 5,000 files in node_modules
and .venv that init must skip.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import Result, report, timed

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "byo" / "fastapi-uv"
PY = sys.executable
FILES = 1000
BUDGET_S = 1.0

ROUTES = '''import os

from fastapi import APIRouter, HTTPException

router = APIRouter(prefix="/things{i}", tags=["things{i}"])
LIMIT = int(os.environ.get("THINGS{i}_LIMIT", "100"))


@router.get("/")
def list_things(skip: int = 0, limit: int = LIMIT) -> list[dict[str, int]]:
    return [{{"id": n}} for n in range(skip, skip + limit)]


@router.get("/{{thing_id}}")
def read_thing(thing_id: int) -> dict[str, int]:
    if thing_id < 0:
        raise HTTPException(status_code=404, detail="not found")
    return {{"id": thing_id}}


@router.post("/")
def create_thing(payload: dict[str, str]) -> dict[str, str]:
    return payload
'''
MIGRATION = '''"""step {i}"""
import sqlalchemy as sa
from alembic import op

revision = "r{i:04d}"
down_revision = {prev}


def upgrade():
    op.add_column("item", sa.Column("c{i}", sa.Integer(), nullable=True))


def downgrade():
    op.drop_column("item", "c{i}")
'''


def make_repository(base: Path) -> Path:
    repo = base / "bigapp"
    shutil.copytree(FIXTURE, repo)
    routes, versions = repo / "backend/app/api/routes", repo / "backend/app/alembic/versions"
    for i in range(600):
        (routes / f"things{i}.py").write_text(ROUTES.format(i=i))
    for i in range(150):
        prev = f'"r{i - 1:04d}"' if i else '"e2412789c190"'
        (versions / f"r{i:04d}_step.py").write_text(MIGRATION.format(i=i, prev=prev))
    other = repo / "frontend" / "src" / "components"
    other.mkdir(parents=True)
    have = sum(1 for p in repo.rglob("*") if p.is_file())
    for i in range(FILES - have):
        (other / f"Component{i}.tsx").write_text(f"export const Component{i} = () => <div>{i}</div>\n")
    for skipped in ("node_modules/react/lib", ".venv/lib/python3.12/site-packages/fastapi"):
        (repo / skipped).mkdir(parents=True)
        for i in range(2500):
            (repo / skipped / f"m{i}.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    return repo


def run() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repository(Path(tmp))
        counted = sum(1 for p in repo.rglob("*") if p.is_file() and not {"node_modules", ".venv"} & set(p.parts))
        seconds = timed([PY, "-m", "deployctl", "init", "--yes", "--force"], cwd=repo)
    return report("deployctl init", [
        Result(f"init --yes on {counted} files (+5000 skipped)", seconds, BUDGET_S, f"{BUDGET_S:.0f} s"),
    ])


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
