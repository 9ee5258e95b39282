"""directory accounts: users signed in by LDAP, and directory group mappings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:00:00.000000

Hand-written (issue 14, "directory sign-in"). New columns on ``users`` (nullable, or with a
server default, so existing rows stay local accounts) and one new table, so the same
statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("auth_source", sa.String(length=16), nullable=False, server_default="local"),
    )
    op.add_column("users", sa.Column("external_id", sa.String(length=1024), nullable=True))
    op.add_column("users", sa.Column("email", sa.String(length=320), nullable=True))
    op.add_column("users", sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "directory_group_maps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_group", sa.String(length=1024), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_group", "group_id", name="uq_directory_group_maps"),
    )
    op.create_index(
        "ix_directory_group_maps_group_id", "directory_group_maps", ["group_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_directory_group_maps_group_id", table_name="directory_group_maps")
    op.drop_table("directory_group_maps")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): batch mode would rebuild users
    # without its AUTOINCREMENT (migration 0007).
    op.drop_column("users", "synced_at")
    op.drop_column("users", "email")
    op.drop_column("users", "external_id")
    op.drop_column("users", "auth_source")
