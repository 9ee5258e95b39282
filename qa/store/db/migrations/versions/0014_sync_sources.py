"""sync_sources and synced_files: folders kept in sync with a collection

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 11:10:00.000000

Hand-written (issue 14, "watched folders and shares"). A source is a folder and its
collection, how often it is scanned and which files count; synced_files is what the last
scan saw of each file (size, mtime, hash) and the document it became, so the next scan
finds what was added, changed, renamed or deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_sources",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            sa.Integer(),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("include", sa.JSON(), nullable=False),
        sa.Column("exclude", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scan_token", sa.String(length=32), nullable=True),
        sa.Column("scan_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_counts", sa.JSON(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "synced_files",
        sa.Column(
            "source_id",
            sa.Integer(),
            sa.ForeignKey("sync_sources.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rel_path", sa.String(length=1024), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "document_id",
            sa.String(length=40),
            sa.ForeignKey("documents.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.create_index("ix_synced_files_sha", "synced_files", ["source_id", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_synced_files_sha", table_name="synced_files")
    op.drop_table("synced_files")
    op.drop_table("sync_sources")
