"""summary jobs: the owner of a job and its cancel flag

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 09:00:00.000000

Hand-written. Batch mode, because SQLite cannot add a foreign key to an existing table
with ALTER: there the table is rebuilt (it holds few rows), PostgreSQL gets plain ALTERs.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_foreign_key(
            "fk_jobs_user", "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index("ix_jobs_user", ["user_id"], unique=False)


def downgrade() -> None:
    with warnings.catch_warnings():
        # Rebuilding jobs on SQLite reflects the users table it points at, whose
        # lower(username) index SQLAlchemy cannot reflect (and does not need to here).
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        with op.batch_alter_table("jobs", schema=None) as batch_op:
            batch_op.drop_index("ix_jobs_user")
            batch_op.drop_constraint("fk_jobs_user", type_="foreignkey")
            batch_op.drop_column("cancel_requested")
            batch_op.drop_column("user_id")
