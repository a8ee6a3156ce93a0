"""Alembic environment: DATABASE_URL from the environment, one migration run at a time (advisory lock)."""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text

from app.models import Base

MIGRATION_LOCK = 4_212_021  # an arbitrary, fixed advisory-lock key shared by every run

if context.config.config_file_name:
    fileConfig(context.config.config_file_name)

url = os.environ.get("DATABASE_URL")
if not url:
    sys.exit("migrate: DATABASE_URL is not set")

engine = create_engine(url, connect_args={"connect_timeout": 10})
with engine.connect() as connection:
    # a second run (a retry, or a rerun after a crash) waits here instead of interleaving
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
    try:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()
