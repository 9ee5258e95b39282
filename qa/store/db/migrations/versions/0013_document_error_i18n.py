"""documents.error_i18n: a failure reason's English template and values, so the console
can show it in the reader's language

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 10:50:00.000000

Hand-written (issue 15, "every server message in both languages"). documents.error keeps
the English sentence (the CLI, logs, API clients that ignore languages); error_i18n is
``qa.messages.Translatable.to_wire()`` of the same sentence, NULL for reasons recorded
before it existed or from text no template covers (they stay English).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("error_i18n", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), as 0011 does.
    op.drop_column("documents", "error_i18n")
