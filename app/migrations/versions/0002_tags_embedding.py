"""Add tags and a pgvector embedding to notes (expand only: both columns are optional).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # the deployer creates the extension as an admin (the app role is not a superuser): this is a no-op then
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.add_column("notes", sa.Column("tags", ARRAY(sa.Text), nullable=False, server_default="{}"))
    op.add_column("notes", sa.Column("embedding", Vector(8), nullable=True))


def downgrade() -> None:
    op.drop_column("notes", "embedding")
    op.drop_column("notes", "tags")
