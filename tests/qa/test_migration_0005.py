"""Migration 0005 on a database that has data (SQLite and PostgreSQL): collection ids are
never handed out again, not even ones deleted before it ran, and rebuilding the SQLite
table cascades into nothing."""

from __future__ import annotations

import sqlalchemy as sa

from qa.store.db.engine import Database, migrate


def test_upgrade_keeps_every_row_and_moves_the_counter_past_ids_in_use(db_url: str) -> None:
    old = Database(db_url, run_migrations=False)
    try:
        migrate(old.engine, "0004")
        with old.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO collections (name, created_at) VALUES (:n, CURRENT_TIMESTAMP)"
                ),
                [{"n": "a"}, {"n": "b"}, {"n": "c"}],
            )
            rows = conn.execute(sa.text("SELECT name, id FROM collections"))
            ids = {str(name): int(id_) for name, id_ in rows}
            conn.execute(
                sa.text(
                    "INSERT INTO documents (id, collection_id, sha256, original_name, size_bytes,"
                    " status, page_count, chunk_count, attempts, created_at, updated_at)"
                    " VALUES ('d1', :c, :sha, 'x.md', 1, 'indexed', 0, 0, 0,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"c": ids["a"], "sha": "a" * 64},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO users (username, password_hash, role, disabled, preferences,"
                    " created_at) VALUES ('u', 'x', 'reader', false, '{}', CURRENT_TIMESTAMP)"
                )
            )
            user = conn.scalar(sa.text("SELECT id FROM users"))
            # An old chat names collection c and one deleted long ago (id c + 2).
            named = [ids["c"], ids["c"] + 2]
            conn.execute(
                sa.text(
                    "INSERT INTO chats (id, user_id, title, collection_ids, created_at, updated_at)"
                    " VALUES ('chat1', :u, 't', :ids, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"u": user, "ids": f"[{named[0]}, {named[1]}]"},
            )
            conn.execute(sa.text("DELETE FROM collections WHERE name = 'c'"))
    finally:
        old.dispose()

    db = Database(db_url)  # migrates to head
    try:
        with db.engine.begin() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM documents")) == 1
            conn.execute(
                sa.text(
                    "INSERT INTO collections (name, created_at) VALUES ('d', CURRENT_TIMESTAMP)"
                )
            )
            new_id = conn.scalar(sa.text("SELECT id FROM collections WHERE name = 'd'"))
            assert conn.scalar(sa.text("SELECT count(*) FROM blobs")) == 0
        assert new_id == named[1] + 1
    finally:
        db.dispose()
