"""Rows of the user_sessions table: the browser sessions the server still honours.

Like ``catalog`` and ``jobs``, every function takes an open ``Session`` and leaves
committing to the caller, so a password change and the end of the user's sessions commit
together. A session id is never stored, only its sha256 (``qa.accounts.users.secret_hash``,
as for API tokens), which is what these functions take: a copy of the database holds no
usable session.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, false, select
from sqlalchemy.orm import Session

from qa.store.db.models import User, UserSession, utcnow


def add_session(session: Session, id_hash: str, user_id: int, expires_at: datetime) -> None:
    session.add(UserSession(id_hash=id_hash, user_id=user_id, expires_at=expires_at))


def session_user(session: Session, id_hash: str, now: datetime) -> User | None:
    """The enabled user of a session that is still live at ``now``, else None (ended,
    expired, or the user disabled). One query: the session's primary key joined to its
    user, with the checks in the WHERE clause."""
    return session.scalars(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(
            UserSession.id_hash == id_hash,
            UserSession.expires_at > now,
            User.disabled == false(),
        )
    ).first()


def delete_session(session: Session, id_hash: str) -> int:
    result = session.execute(delete(UserSession).where(UserSession.id_hash == id_hash))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_user_sessions(session: Session, user_id: int) -> int:
    """End every session of one user; how many there were."""
    result = session.execute(delete(UserSession).where(UserSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_expired_sessions(session: Session, now: datetime | None = None) -> int:
    result = session.execute(delete(UserSession).where(UserSession.expires_at <= (now or utcnow())))
    return int(getattr(result, "rowcount", 0) or 0)
