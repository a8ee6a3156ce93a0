"""The HTTP surface through FastAPI's TestClient, against the real (migrated) Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import db
from app.main import app
from tests.app.support import PASSWORD, SECRET_KEY, unreachable_url


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, migrated: str) -> Iterator[pytest.MonkeyPatch]:
    """A well-configured environment; tests change what they need. The lazy engine follows it."""
    monkeypatch.setenv("DATABASE_URL", migrated)
    monkeypatch.setenv("SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("K_SERVICE", "notes")
    monkeypatch.setenv("K_REVISION", "notes-00007-xyz")
    db.engine.cache_clear()
    yield monkeypatch
    db.dispose()
    db.engine.cache_clear()


@pytest.fixture
def client(settings: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def test_health_names_the_revision_and_touches_nothing(settings: pytest.MonkeyPatch) -> None:
    settings.setenv("DATABASE_URL", "postgresql+psycopg://app:x@/nowhere?host=/nonexistent")
    settings.delenv("SECRET_KEY")
    response = TestClient(app).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "notes", "revision": "notes-00007-xyz"}


def test_health_defaults_to_local(settings: pytest.MonkeyPatch) -> None:
    settings.delenv("K_SERVICE")
    settings.delenv("K_REVISION")
    assert TestClient(app).get("/health").json() == {"status": "healthy", "service": "local", "revision": "local"}


def test_startup_is_ok_when_the_database_and_the_secret_are(client: TestClient) -> None:
    response = client.get("/startup")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "secret_key": "ok"}}


def test_startup_fails_without_leaking_the_password(settings: pytest.MonkeyPatch, migrated: str) -> None:
    wrong = "wrong-" + PASSWORD
    settings.setenv("DATABASE_URL", migrated.replace(PASSWORD, wrong))
    settings.setenv("SECRET_KEY", "not-hex-" + SECRET_KEY)
    response = TestClient(app).get("/startup")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "error: OperationalError", "secret_key": "malformed"}
    for secret in (wrong, SECRET_KEY, "host="):
        assert secret not in response.text


@pytest.mark.parametrize(
    ("change", "checks"),
    [
        ({"SECRET_KEY": None}, {"database": "ok", "secret_key": "missing"}),
        ({"SECRET_KEY": "ab" * 15}, {"database": "ok", "secret_key": "malformed"}),  # 30 hex characters
        ({"DATABASE_URL": None}, {"database": "missing: DATABASE_URL", "secret_key": "ok"}),
        ({"DATABASE_URL": "not a url"}, {"database": "error: ArgumentError", "secret_key": "ok"}),
    ],
)
def test_startup_names_each_failing_check(
    settings: pytest.MonkeyPatch, change: dict[str, str | None], checks: dict[str, str]
) -> None:
    for name, value in change.items():
        if value is None:
            settings.delenv(name)
        else:
            settings.setenv(name, value)
    response = TestClient(app).get("/startup")
    assert response.status_code == 503 and response.json() == {"status": "failing", "checks": checks}


def test_startup_gives_up_on_an_unreachable_database(settings: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings.setenv("DATABASE_URL", unreachable_url(tmp_path))
    response = TestClient(app).get("/startup")
    assert response.status_code == 503 and response.json()["checks"]["database"] == "error: OperationalError"


def test_docs_and_the_home_page(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "/api/notes" in client.get("/openapi.json").json()["paths"]
    home = client.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in home.text and "notes" in home.text


def test_notes_round_trip_and_tag_search(client: TestClient) -> None:
    created = client.post("/api/notes", json={"title": "deploy", "body": "ship it", "tags": ["rt-ops", "rt-run"],
                                              "embedding": [1, 0, 0, 0, 0, 0, 0, 0]})
    assert created.status_code == 201
    note = created.json()
    assert note["title"] == "deploy" and note["tags"] == ["rt-ops", "rt-run"] and note["created_at"]
    client.post("/api/notes", json={"title": "other", "tags": ["rt-misc"], "embedding": [0, 1, 0, 0, 0, 0, 0, 0]})
    client.post("/api/notes", json={"title": "untagged"})

    assert client.get(f"/api/notes/{note['id']}").json() == note
    assert [n["title"] for n in client.get("/api/notes", params={"tag": "rt-ops"}).json()] == ["deploy"]
    assert [n["title"] for n in client.get("/api/notes", params={"limit": 3}).json()] == ["untagged", "other", "deploy"]
    similar = client.post("/api/notes/similar", json=[0.9, 0.1, 0, 0, 0, 0, 0, 0], params={"limit": 1})
    assert [n["title"] for n in similar.json()] == ["deploy"]


def test_bad_requests_are_refused(client: TestClient) -> None:
    assert client.get("/api/notes/999999").status_code == 404
    assert client.post("/api/notes", json={"title": ""}).status_code == 422
    assert client.post("/api/notes", json={"title": "x", "embedding": [1, 2]}).status_code == 422
    assert client.get("/api/notes", params={"limit": 0}).status_code == 422
