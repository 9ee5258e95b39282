"""Browser sessions on the server (qa.accounts.sessions), on real SQLite and PostgreSQL:
sign-out ends one session; a password change, a role change or disabling the account ends
all of the user's sessions in the same transaction; API tokens are a separate credential."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from qa.accounts.sessions import SessionService
from qa.accounts.users import AccountService
from qa.errors import Unauthenticated
from qa.store.db.engine import Database
from qa.store.db.models import UserSession, utcnow
from tests.qa.conftest import PASSWORD


@pytest.fixture
def sessions(db: Database) -> SessionService:
    return SessionService(db, lifetime=timedelta(hours=12))


def _rows(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(UserSession)) or 0)


def test_a_session_names_its_user_until_it_ends(
    db: Database, accounts: AccountService, sessions: SessionService
) -> None:
    uid = accounts.create_user("carol", PASSWORD).user_id
    first, second = sessions.start(uid), sessions.start(uid)
    assert first != second
    assert sessions.principal(first).username == "carol"
    assert sessions.end(first) is True
    with pytest.raises(Unauthenticated):
        sessions.principal(first)
    assert sessions.end(first) is False  # ending twice is harmless
    assert sessions.principal(second).user_id == uid  # the other browser is still in
    with pytest.raises(Unauthenticated):
        sessions.principal("not-a-session")
    # Only a hash of the id is stored: the database holds nothing a cookie could carry.
    with db.session() as s:
        stored = s.scalars(select(UserSession.id_hash)).all()
    assert second not in stored and len(stored) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"password": "a brand new password"}, "password"),
        ({"role": "editor"}, "role"),
        ({"disabled": True}, "disabled"),
    ],
)
def test_account_changes_end_every_session(
    accounts: AccountService,
    sessions: SessionService,
    change: dict[str, object],
    reason: str,
) -> None:
    uid = accounts.create_user("dave", PASSWORD).user_id
    other = accounts.create_user("erin", PASSWORD).user_id
    mine = [sessions.start(uid) for _ in range(3)]
    theirs = sessions.start(other)
    token, _ = accounts.create_token(uid, "script")
    result = accounts.update_user(uid, **change)  # type: ignore[arg-type]
    assert result.session_reasons == (reason,)
    assert result.sessions_ended == 3
    for session_id in mine:
        with pytest.raises(Unauthenticated):
            sessions.principal(session_id)
    assert sessions.principal(theirs).user_id == other
    if reason != "disabled":  # a disabled account's tokens are refused while it is disabled
        assert accounts.authenticate_token(token).user_id == uid


def test_enabling_again_does_not_revive_old_sessions(
    accounts: AccountService, sessions: SessionService
) -> None:
    uid = accounts.create_user("fay", PASSWORD).user_id
    old = sessions.start(uid)
    accounts.update_user(uid, disabled=True)
    assert accounts.update_user(uid, disabled=False).session_reasons == ()
    with pytest.raises(Unauthenticated):
        sessions.principal(old)


def test_changes_that_keep_sessions(accounts: AccountService, sessions: SessionService) -> None:
    uid = accounts.create_user("gus", PASSWORD, role="editor").user_id
    live = sessions.start(uid)
    for change in ({"display_name": "Gus"}, {"role": "editor"}, {"disabled": False}):
        result = accounts.update_user(uid, **change)  # type: ignore[arg-type]
        assert (result.session_reasons, result.sessions_ended) == ((), 0), change
    assert sessions.principal(live).display_name == "Gus"


def test_end_all_and_delete_user(
    db: Database, accounts: AccountService, sessions: SessionService
) -> None:
    uid = accounts.create_user("hal", PASSWORD).user_id
    ids = [sessions.start(uid) for _ in range(2)]
    assert sessions.end_all(uid) == 2
    assert sessions.end_all(uid) == 0
    for session_id in ids:
        with pytest.raises(Unauthenticated):
            sessions.principal(session_id)
    sessions.start(uid)
    accounts.delete_user(uid)  # the rows go with the user (ON DELETE CASCADE)
    assert _rows(db) == 0


def test_expired_sessions_end_on_the_server_and_are_swept(
    db: Database, accounts: AccountService, sessions: SessionService
) -> None:
    uid = accounts.create_user("ida", PASSWORD).user_id
    stale = sessions.start(uid)
    with db.session() as s:
        s.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    with pytest.raises(Unauthenticated):
        sessions.principal(stale)  # whatever the cookie's own expiry says
    fresh = sessions.start(uid)  # a sign-in sweeps expired rows
    assert _rows(db) == 1
    assert sessions.principal(fresh).user_id == uid
