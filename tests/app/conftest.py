"""One embedded Postgres for the sample app's tests: an `app` role with a password, its own database,
and the vector extension created by the superuser (as the deployer does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.config import Database
from deployctl.targets.local.postgres import LocalDatabase

PASSWORD = "app-test-password-5b1e"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = LocalDatabase(tmp_path_factory.mktemp("pg") / "data", Database())
    db.sync_role(PASSWORD)
    socket_dir = db.facts()["db_socket"]
    yield f"postgresql+psycopg://app:{PASSWORD}@/app?host={socket_dir}"
    db.stop()


@pytest.fixture(scope="session")
def repo() -> Path:
    return Path(__file__).resolve().parents[2]
