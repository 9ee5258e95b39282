"""documents.error_code: the kind of a failure, so a retry is offered only where it helps

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:05:00.000000

Hand-written (issue 15, "admin"). One nullable column: failures recorded before it have no
code and stay retryable, as every failure was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("error_code", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), as 0008 does for documents.
    op.drop_column("documents", "error_code")
