"""Browser sessions the server can end: sign-out, "sign out everywhere", and the end of
every session of a user whose password, role or enabled state changed.

A session is a row (``qa.store.user_sessions``) named by a random id that only the
session cookie carries. Each request looks the id up together with its user, one query by
primary key, the same cost as reading the user row alone. API tokens are a separate
credential (``AccountService.authenticate_token``): ending sessions leaves them working
until they are revoked.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from qa.accounts.users import Principal, principal_of, secret_hash
from qa.errors import InvalidInput, Unauthenticated
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import utcnow
from qa.store.user_sessions import (
    add_session,
    delete_expired_sessions,
    delete_session,
    delete_user_sessions,
    session_user,
)

_SESSION_ENDED = N_("your session has ended; sign in again")
#: session ids are 256 random bits, URL-safe (they travel in a signed cookie)
_SESSION_ID_BYTES = 32


class SessionService:
    """Start, check and end the browser sessions of the metadata DB."""

    def __init__(self, db: Database, *, lifetime: timedelta) -> None:
        if lifetime <= timedelta(0):
            raise InvalidInput("a session lifetime must be positive")
        self.db = db
        self.lifetime = lifetime

    def start(self, user_id: int) -> str:
        """A new session for the user; its id (for the cookie), returned only here.

        Expired rows of every user are swept here, at sign-in, rather than on a timer: an
        indexed delete, and sign-ins are rare next to requests.
        """
        session_id = secrets.token_urlsafe(_SESSION_ID_BYTES)
        now = utcnow()
        with self.db.session() as session:
            delete_expired_sessions(session, now)
            add_session(session, secret_hash(session_id), user_id, now + self.lifetime)
            session.commit()
        return session_id

    def principal(self, session_id: str) -> Principal:
        """The signed-in user of a live session, or ``Unauthenticated`` (signed out, ended
        by a password, role or account change, expired, or the user deleted or disabled)."""
        if not isinstance(session_id, str) or not session_id:
            raise Unauthenticated(_SESSION_ENDED)
        with self.db.session() as session:
            user = session_user(session, secret_hash(session_id), utcnow())
        if user is None:
            raise Unauthenticated(_SESSION_ENDED)
        return principal_of(user)

    def end(self, session_id: str) -> bool:
        """End one session (sign-out); whether it was still live."""
        with self.db.session() as session:
            ended = delete_session(session, secret_hash(session_id))
            session.commit()
        return ended > 0

    def end_all(self, user_id: int) -> int:
        """End every session of a user ("sign out everywhere"); how many ended."""
        with self.db.session() as session:
            ended = delete_user_sessions(session, user_id)
            session.commit()
        return ended
