"""chat messages: the outcome of an answer (answered / not_found)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 06:00:00.000000

Hand-written. A nullable column: questions and answers stored before it have no outcome
(read as unknown), and a plain ADD COLUMN works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chat_messages", sa.Column("outcome", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with warnings.catch_warnings():
        # Rebuilding chat_messages on SQLite reflects the tables it points at; the users
        # table's lower(username) index cannot be reflected (and is not needed here).
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        with op.batch_alter_table("chat_messages", schema=None) as batch_op:
            batch_op.drop_column("outcome")
