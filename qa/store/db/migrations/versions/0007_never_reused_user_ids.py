"""user ids never reused

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:00:00.000000

Hand-written (issue 12, "deleted means gone", as 0005 did for collections).

SQLite hands the highest rowid out again once its row is deleted, so an account created
after the newest one was deleted got its id. What keys on a user id in the database goes
with the account (sessions, tokens, chats, memberships, grants, jobs: ON DELETE CASCADE),
but the audit log stays (no foreign key) and the admin audit page filters it by user id:
the new account would show the deleted one's events as its own.

* SQLite: the table is rebuilt with AUTOINCREMENT (``qa.store.db.engine.migrate`` runs
  SQLite migrations with foreign keys off, so dropping the old table cascades into
  nothing) and the counter moved past every user id the audit log names, so an id deleted
  before this migration is not handed out again either. The case-insensitive username
  index is on an expression, which batch mode does not carry over: it is created again.
* PostgreSQL: the ``users.id`` sequence never goes back; nothing to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LOWER_INDEX = "uq_users_username_lower"


def _rebuild_users(*, autoincrement: bool) -> None:
    op.drop_index(_LOWER_INDEX, table_name="users")
    with op.batch_alter_table(
        "users", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
    op.create_index(_LOWER_INDEX, "users", [sa.text("lower(username)")], unique=True)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    highest = int(
        conn.scalar(
            sa.text(
                "SELECT MAX(id) FROM (SELECT MAX(id) AS id FROM users"
                " UNION ALL SELECT MAX(user_id) FROM audit_events)"
            )
        )
        or 0
    )
    _rebuild_users(autoincrement=True)
    # The copy set sqlite_sequence to the highest id copied; ids the audit log names go too.
    conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'users'"))
    conn.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('users', :seq)"),
        {"seq": highest},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_users(autoincrement=False)
