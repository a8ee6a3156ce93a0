"""Alembic environment: DATABASE_URL from the environment, one migration run at a time (advisory lock).

Every pending revision runs in ONE transaction (Postgres has transactional DDL) that first takes a
transaction-scoped advisory lock: a second run started meanwhile (a retry, a concurrent release) waits,
then finds the head already reached. Commit or rollback releases the lock, so a failing migration
reports its own error. Expected failures (no URL, database unreachable) are one line on stderr.
"""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ArgumentError, OperationalError

from app.models import Base

MIGRATION_LOCK = 4_212_021  # an arbitrary, fixed advisory-lock key shared by every run
# DDL waits at most this long for a table lock, so a migration never queues every query of the
# serving revision behind it; the job fails instead and can be retried.
LOCK_TIMEOUT = "10s"

if context.config.config_file_name:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)


def run_offline(url: str) -> None:
    """`alembic ... upgrade head --sql`: print the SQL, touch nothing."""
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online(url: str) -> None:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 10})
        connection = engine.connect()
    except ArgumentError:
        sys.exit("migrate: DATABASE_URL is not a valid SQLAlchemy URL")
    except OperationalError as exc:
        # the driver's message may name the host or the user: only the error's class leaves this process
        sys.exit(f"migrate: cannot connect to the database ({type(exc.orig).__name__})")
    with connection, connection.begin():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():  # joins the transaction opened above
            context.run_migrations()
    engine.dispose()


def main() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("migrate: DATABASE_URL is not set")
    if context.is_offline_mode():
        run_offline(url)
    else:
        run_online(url)


main()
