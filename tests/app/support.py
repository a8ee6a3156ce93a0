"""Helpers for the sample service's tests: its commands run exactly as deployctl runs them — as
subprocesses, from the parent of app/, with only the settings given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "app-test-password-5b1e"
SECRET_KEY = "ab" * 32


def environment(url: str | None, **settings: str) -> dict[str, str]:
    """This process's environment without the service's settings, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "PORT", "HOST")}
    if url is not None:
        env["DATABASE_URL"] = url
    return {**env, **settings}


def run(args: list[str], url: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=environment(url), capture_output=True, text=True, timeout=60)


def alembic_command(*args: str) -> list[str]:
    """`alembic -c app/alembic.ini ...` with the venv's console script, as the migrate job runs it."""
    return [str(Path(sys.executable).parent / "alembic"), "-c", "app/alembic.ini", *args]


def alembic(url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return run(alembic_command(*args), url)


def init_indexes(url: str | None) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "app.init_indexes"], url)


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A plain psycopg connection as the app role, for looking at what the commands did."""
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def head(url: str) -> str | None:
    with connect(url) as conn:
        if conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


def columns(url: str, table: str = "notes") -> set[str]:
    with connect(url) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
        return {str(r[0]) for r in rows}


def unreachable_url(socket_dir: Path) -> str:
    """A well-formed URL whose server does not exist (an empty socket directory)."""
    return f"postgresql+psycopg://app:{PASSWORD}@/app?host={socket_dir}"
