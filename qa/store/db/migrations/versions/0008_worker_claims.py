"""worker claims and durable reindex requests

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 13:10:00.000000

Hand-written (issue 12, "recovery in scaled mode measured in seconds"). Two nullable
columns, so the same statements run on SQLite and PostgreSQL and existing rows need no
value: ``documents.claimed_by``, the worker node processing a document (a restarted worker
takes back its own documents, the reconciler those of a worker whose heartbeat expired),
and ``collections.reindex_requested_at``, a reindex asked for and not yet published (the
request outlives an index worker killed while it held the message).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("claimed_by", sa.String(length=255), nullable=True))
    op.add_column(
        "collections", sa.Column("reindex_requested_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): batch mode would rebuild
    # collections without its AUTOINCREMENT.
    op.drop_column("collections", "reindex_requested_at")
    op.drop_column("documents", "claimed_by")
