"""collection ids never reused; the blobs table that serialises uploads and releases

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 09:00:00.000000

Hand-written (issue 12, "deleted means gone").

* SQLite hands the highest rowid out again once its row is deleted, so a deleted
  collection's id went to the next one created, and old chats pointed at it. The table is
  rebuilt with AUTOINCREMENT (``qa.store.db.engine.migrate`` runs SQLite migrations with
  foreign keys off: dropping the old table would otherwise cascade into every document).
  PostgreSQL's sequence never goes back already.
* On both, the counter is moved past every collection id a chat still names, so an id
  deleted before this migration is not handed out again either.
* ``blobs``: one row per stored original, locked by an upload and by a release of the same
  bytes (``qa.store.blob_refs``).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _highest_collection_id_in_use(conn: sa.Connection) -> int:
    highest = int(conn.scalar(sa.text("SELECT COALESCE(MAX(id), 0) FROM collections")) or 0)
    for (raw,) in conn.execute(sa.text("SELECT collection_ids FROM chats")):
        ids = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(ids, list):
            highest = max([highest, *(i for i in ids if isinstance(i, int))])
    return highest


def upgrade() -> None:
    conn = op.get_bind()
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    highest = _highest_collection_id_in_use(conn)
    if conn.dialect.name == "sqlite":
        with op.batch_alter_table(
            "collections", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
        # The copy set sqlite_sequence to the highest id copied; ids chats name go too.
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'collections'"))
        conn.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('collections', :seq)"),
            {"seq": highest},
        )
    else:
        sequence = conn.scalar(sa.text("SELECT pg_get_serial_sequence('collections', 'id')"))
        last = int(conn.scalar(sa.text(f"SELECT last_value FROM {sequence}")) or 0)
        if highest > last:
            conn.execute(
                sa.text("SELECT setval(:sequence, :seq)"), {"sequence": sequence, "seq": highest}
            )


def downgrade() -> None:
    op.drop_table("blobs")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "collections", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
