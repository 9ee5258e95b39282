"""Migration 0007 on a database that has users (SQLite and PostgreSQL): a user id is never
handed out again, not even one deleted before it ran, so the audit log's events of a
deleted account never become a new account's; the rebuilt SQLite table keeps its rows,
what hangs off them and its case-insensitive uniqueness."""

from __future__ import annotations

import secrets
import warnings
from datetime import timedelta

import pytest
import sqlalchemy as sa

from qa.accounts.audit import SIGN_IN, AuditLog
from qa.accounts.sessions import SessionService
from qa.accounts.users import TOKEN_PREFIX, AccountService, hash_password, secret_hash
from qa.errors import Conflict
from qa.store.db.engine import Database, migrate
from qa.store.db.models import utcnow
from tests.qa.conftest import PASSWORD

HOUR = timedelta(hours=1)


def _old_accounts(old: Database) -> tuple[int, int, str, str]:
    """kept and gone (deleted: the newest account) as the 0006 schema stores them, a token
    and a session of kept, and an audit event of gone: (kept id, gone id, token, session).

    Written through the tables reflected from that schema, not the ORM, whose models are
    the newest schema's (later migrations add columns 0006 does not have)."""
    meta = sa.MetaData()
    with warnings.catch_warnings():
        # SQLite's expression index (lower(username)) is not reflected; rows don't need it.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        meta.reflect(old.engine, only=["users", "api_tokens", "user_sessions", "audit_events"])
    users, tokens = meta.tables["users"], meta.tables["api_tokens"]
    now = utcnow()
    token, session_id = TOKEN_PREFIX + secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with old.engine.begin() as conn:
        ids = [
            conn.execute(
                users.insert().values(
                    username=name,
                    password_hash=hash_password(PASSWORD),
                    role="reader",
                    disabled=False,
                    preferences={},
                    created_at=now,
                )
            ).inserted_primary_key[0]
            for name in ("kept", "gone")
        ]
        kept, gone = int(ids[0]), int(ids[1])
        conn.execute(
            meta.tables["audit_events"]
            .insert()
            .values(at=now, user_id=gone, username="gone", action=SIGN_IN, details={})
        )
        conn.execute(
            tokens.insert().values(
                user_id=kept,
                name="script",
                token_hash=secret_hash(token),
                prefix=token[:11],
                created_at=now,
            )
        )
        conn.execute(
            meta.tables["user_sessions"]
            .insert()
            .values(
                id_hash=secret_hash(session_id), user_id=kept, created_at=now, expires_at=now + HOUR
            )
        )
        conn.execute(users.delete().where(users.c.id == gone))  # deleted before 0007 ran
    return kept, gone, token, session_id


def test_upgrade_keeps_users_and_never_reuses_their_ids(db_url: str) -> None:
    old = Database(db_url, run_migrations=False)
    try:
        migrate(old.engine, "0006")
        kept_id, gone_id, token, session_id = _old_accounts(old)
    finally:
        old.dispose()

    db = Database(db_url)  # migrates to head
    try:
        accounts = AccountService(db)
        after = accounts.create_user("after", PASSWORD)
        assert after.user_id == gone_id + 1  # not gone's: its audit events stay its own
        accounts.delete_user(after.user_id)
        assert accounts.create_user("later", PASSWORD).user_id == after.user_id + 1
        assert [e.user_id for e in AuditLog(db).list(action=SIGN_IN)] == [gone_id]
        assert accounts.authenticate_token(token).user_id == kept_id
        assert SessionService(db, lifetime=HOUR).principal(session_id).username == "kept"
        with pytest.raises(Conflict):
            accounts.create_user("KEPT", PASSWORD)
    finally:
        db.dispose()
