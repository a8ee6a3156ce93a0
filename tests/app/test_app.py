"""The sample service against a real Postgres: migrations, endpoints, index init."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import PASSWORD

SECRET_KEY = "ab" * 32


def _run(args: list[str], repo: Path, url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url:
        env["DATABASE_URL"] = url
    return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60)


def _alembic(repo: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(["-m", "alembic", "-c", "app/alembic.ini", *args], repo, url)


@pytest.fixture(scope="module")
def migrated(repo: Path, database_url: str) -> str:
    out = _alembic(repo, database_url, "upgrade", "head")
    assert out.returncode == 0, out.stderr
    return database_url


@pytest.fixture
def client(migrated: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from app import db
    from app.main import app

    monkeypatch.setenv("DATABASE_URL", migrated)
    monkeypatch.setenv("SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("K_REVISION", "api-00007-xyz")
    db.engine.cache_clear()
    with TestClient(app) as test_client:
        yield test_client
    db.engine.cache_clear()


def _head(url: str) -> str:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else ""


def test_migrations_go_down_and_up_again(repo: Path, migrated: str) -> None:
    assert _head(migrated) == "0002"
    assert _alembic(repo, migrated, "downgrade", "base").returncode == 0
    assert _alembic(repo, migrated, "upgrade", "head").returncode == 0
    assert _head(migrated) == "0002"


def test_migration_without_database_url_is_one_line(repo: Path) -> None:
    out = _alembic(repo, "", "upgrade", "head")
    assert out.returncode == 1 and out.stderr.strip() == "migrate: DATABASE_URL is not set"


def test_health_startup_docs_and_index(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["revision"] == "api-00007-xyz"
    startup = client.get("/startup")
    assert startup.status_code == 200
    assert startup.json() == {"status": "ok", "checks": {"database": "ok", "secret_key": "ok"}}
    assert client.get("/docs").status_code == 200
    index = client.get("/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"] and "/docs" in index.text


def test_startup_fails_without_leaking_the_password(migrated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import db
    from app.main import app

    monkeypatch.setenv("DATABASE_URL", migrated.replace(PASSWORD, "wrong-" + PASSWORD))
    monkeypatch.setenv("SECRET_KEY", "short")
    db.engine.cache_clear()
    try:
        response = TestClient(app).get("/startup")
    finally:
        db.engine.cache_clear()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "error: OperationalError", "secret_key": "malformed"}
    assert PASSWORD not in response.text


def test_notes_api_round_trip(client: TestClient) -> None:
    created = client.post("/api/notes", json={"title": "deploy", "body": "ship it", "tags": ["ops", "cloud-run"],
                                              "embedding": [1, 0, 0, 0, 0, 0, 0, 0]})
    assert created.status_code == 201
    note = created.json()
    client.post("/api/notes", json={"title": "other", "tags": ["misc"], "embedding": [0, 1, 0, 0, 0, 0, 0, 0]})
    assert client.get(f"/api/notes/{note['id']}").json()["title"] == "deploy"
    assert [n["title"] for n in client.get("/api/notes", params={"tag": "ops"}).json()] == ["deploy"]
    similar = client.post("/api/notes/similar", json=[0.9, 0.1, 0, 0, 0, 0, 0, 0], params={"limit": 1})
    assert [n["title"] for n in similar.json()] == ["deploy"]
    assert client.get("/api/notes/999999").status_code == 404
    assert client.post("/api/notes", json={"title": ""}).status_code == 422


def test_init_indexes_is_idempotent(repo: Path, migrated: str) -> None:
    first = _run(["-m", "app.init_indexes"], repo, migrated)
    second = _run(["-m", "app.init_indexes"], repo, migrated)
    assert first.returncode == second.returncode == 0, first.stderr
    assert second.stdout.splitlines() == ["notes_tags_gin: already present", "notes_embedding_hnsw: already present"]
    with psycopg.connect(migrated.replace("postgresql+psycopg", "postgresql")) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'notes'")}
    assert {"notes_tags_gin", "notes_embedding_hnsw"} <= names


def test_init_indexes_without_a_database_is_one_line(repo: Path, tmp_path: Path) -> None:
    out = _run(["-m", "app.init_indexes"], repo, f"postgresql+psycopg://app:x@/app?host={tmp_path}")
    assert out.returncode == 1
    assert out.stderr.strip() == "init_indexes: database error: OperationalError"


def test_the_server_starts_and_stops_on_sigterm(repo: Path, migrated: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": migrated, "SECRET_KEY": SECRET_KEY, "PORT": str(port), "HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/startup", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the service did not become ready")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown
        log = proc.stderr.read() if proc.stderr else ""
        assert "Waiting for application shutdown." in log and "Finished server process" in log
    finally:
        proc.kill()
        proc.wait()
