"""Migration 0007 on a database that has users (SQLite and PostgreSQL): a user id is never
handed out again, not even one deleted before it ran, so the audit log's events of a
deleted account never become a new account's; the rebuilt SQLite table keeps its rows,
what hangs off them and its case-insensitive uniqueness."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qa.accounts.audit import SIGN_IN, AuditLog
from qa.accounts.sessions import SessionService
from qa.accounts.users import AccountService
from qa.errors import Conflict
from qa.store.db.engine import Database, migrate
from tests.qa.conftest import PASSWORD

HOUR = timedelta(hours=1)


def test_upgrade_keeps_users_and_never_reuses_their_ids(db_url: str) -> None:
    old = Database(db_url, run_migrations=False)
    try:
        migrate(old.engine, "0006")
        accounts = AccountService(old)
        kept = accounts.create_user("kept", PASSWORD)
        gone = accounts.create_user("gone", PASSWORD)
        AuditLog(old).record(SIGN_IN, actor=gone)
        token, _ = accounts.create_token(kept.user_id, "script")
        session_id = SessionService(old, lifetime=HOUR).start(kept.user_id)
        accounts.delete_user(gone.user_id)  # the newest account, deleted before 0007 ran
    finally:
        old.dispose()

    db = Database(db_url)  # migrates to head
    try:
        accounts = AccountService(db)
        after = accounts.create_user("after", PASSWORD)
        assert after.user_id == gone.user_id + 1  # not gone's: its audit events stay its own
        accounts.delete_user(after.user_id)
        assert accounts.create_user("later", PASSWORD).user_id == after.user_id + 1
        assert [e.user_id for e in AuditLog(db).list(action=SIGN_IN)] == [gone.user_id]
        assert accounts.authenticate_token(token).user_id == kept.user_id
        assert SessionService(db, lifetime=HOUR).principal(session_id).username == "kept"
        with pytest.raises(Conflict):
            accounts.create_user("KEPT", PASSWORD)
    finally:
        db.dispose()
