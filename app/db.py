"""The database engine, created lazily from DATABASE_URL (pool_pre_ping survives Cloud SQL restarts)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from app import settings


class NotConfigured(RuntimeError):  # noqa: N818 - reads as the state it names
    """DATABASE_URL is not set."""


@lru_cache(maxsize=1)
def engine() -> Engine:
    url = settings.database_url()
    if url is None:
        raise NotConfigured("DATABASE_URL is not set")
    size, overflow = settings.pool()
    return create_engine(url, pool_pre_ping=True, pool_size=size, max_overflow=overflow,
                         connect_args={"connect_timeout": 3})


def dispose() -> None:
    """Close the pooled connections (at shutdown), if the engine was ever created."""
    if engine.cache_info().currsize:
        engine().dispose()


def session() -> Iterator[Session]:
    with sessionmaker(engine(), expire_on_commit=False)() as db:
        yield db
