"""documents.ocr_pages and pages.boxes: what OCR read, and where each line sits on its page

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 10:30:00.000000

Hand-written (issue 14, OCR). documents.ocr_pages counts the pages whose text came from OCR
(0 for everything indexed before); pages.boxes holds an OCR'd page's line boxes for the
viewer's highlight, NULL for pages read from a text layer.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "documents", sa.Column("ocr_pages", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("pages", sa.Column("boxes", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), as 0011 does.
    op.drop_column("pages", "boxes")
    op.drop_column("documents", "ocr_pages")
