"""The audit log: who did what to which thing, when and from where.

Events copy the user id and username at the time of the event and have no foreign key to
``users``, so the log still reads after an account is deleted. Recording never fails
because of what it is given (long or odd values are cut down to something storable); it
fails only when the database does, as ``StorageError``, so a caller can decide whether the
action may go ahead unlogged.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from qa.accounts.users import Principal
from qa.errors import InvalidInput, StorageError
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import AuditEvent, utcnow

# The actions recorded (the column takes any string up to 48 characters); the admin
# audit page offers ACTIONS as its filter.
SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_OUT = "sign_out"
#: every session of the signed-in user ended at their request
SIGN_OUT_EVERYWHERE = "sign_out_everywhere"
#: every session of a user ended by a change to the account (details: reason, sessions)
SESSIONS_ENDED = "sessions_ended"
UPLOAD = "upload"
DELETE_DOCUMENT = "delete_document"
DELETE_COLLECTION = "delete_collection"
CREATE_COLLECTION = "create_collection"
RENAME_COLLECTION = "rename_collection"
REINDEX = "reindex"
RETRY = "retry"
GRANT = "grant"
REVOKE = "revoke"
QUESTION = "question"
USER_CREATE = "user_create"
USER_UPDATE = "user_update"
USER_DELETE = "user_delete"
GROUP_CREATE = "group_create"
GROUP_UPDATE = "group_update"
GROUP_DELETE = "group_delete"
TOKEN_CREATE = "token_create"
TOKEN_REVOKE = "token_revoke"
SETTINGS_CHANGE = "settings_change"
SUMMARIZE = "summarize"
SUMMARY_CANCEL = "summary_cancel"
#: a ``docqa gc`` sweep (by the CLI or the reconciler; details: what it freed)
GC = "gc"
#: ``docqa backup`` wrote a backup (details: database kind, counts, index versions)
BACKUP = "backup"
#: a directory re-sync changed accounts (details: what it checked, updated and disabled)
DIRECTORY_SYNC = "directory_sync"
#: a directory group mapped to a docqa group, or the mapping removed
DIRECTORY_MAP = "directory_map"
#: ``docqa restore`` rebuilt this data dir from a backup (recorded in the restored log)
RESTORE = "restore"
#: a folder was set to sync into a collection, scanned on request, or no longer synced
SYNC_ADD, SYNC_RUN, SYNC_REMOVE = "sync_add", "sync_run", "sync_remove"
ACTIONS = (
    SIGN_IN,
    SIGN_IN_FAILED,
    SIGN_OUT,
    SIGN_OUT_EVERYWHERE,
    SESSIONS_ENDED,
    UPLOAD,
    DELETE_DOCUMENT,
    DELETE_COLLECTION,
    CREATE_COLLECTION,
    RENAME_COLLECTION,
    REINDEX,
    RETRY,
    GRANT,
    REVOKE,
    QUESTION,
    USER_CREATE,
    USER_UPDATE,
    USER_DELETE,
    GROUP_CREATE,
    GROUP_UPDATE,
    GROUP_DELETE,
    TOKEN_CREATE,
    TOKEN_REVOKE,
    SETTINGS_CHANGE,
    DIRECTORY_SYNC,
    DIRECTORY_MAP,
    SUMMARIZE,
    SUMMARY_CANCEL,
    GC,
    BACKUP,
    RESTORE,
    SYNC_ADD,
    SYNC_RUN,
    SYNC_REMOVE,
)

MAX_LIST_LIMIT = 1000
#: strings inside ``details`` are cut to this many characters
MAX_DETAIL_CHARS = 2000
_MAX_DETAIL_ITEMS = 100
_MAX_DETAIL_DEPTH = 5
_ACTION_CHARS, _USERNAME_CHARS, _TARGET_CHARS, _IP_CHARS = 48, 64, 300, 64


def _clip(text: str | None, limit: int) -> str | None:
    """Fit a value into its column: no NUL (PostgreSQL refuses it), at most ``limit``."""
    if text is None:
        return None
    text = str(text).replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as bounded plain JSON; anything else becomes its (clipped) string form."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _clip(value, MAX_DETAIL_CHARS)
    if depth < _MAX_DETAIL_DEPTH and isinstance(value, Mapping):
        items = list(value.items())[:_MAX_DETAIL_ITEMS]
        return {str(k): _plain(v, depth + 1) for k, v in items}
    if depth < _MAX_DETAIL_DEPTH and isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in list(value)[:_MAX_DETAIL_ITEMS]]
    return _clip(repr(value), MAX_DETAIL_CHARS)


class AuditLog:
    """Append-only event log in the metadata DB."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self,
        action: str,
        *,
        actor: Principal | None = None,
        username: str | None = None,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
        ip: str | None = None,
    ) -> None:
        """Store one event. ``username`` (e.g. the name typed at a failed sign-in) wins
        over ``actor.username``; ``user_id`` comes from ``actor`` only."""
        if not isinstance(action, str) or not action.strip():
            raise InvalidInput("an audit action is required")
        event = AuditEvent(
            at=utcnow(),
            user_id=actor.user_id if actor is not None else None,
            username=_clip(
                username if username is not None else _actor_name(actor), _USERNAME_CHARS
            ),
            action=_clip(action.strip(), _ACTION_CHARS),
            target=_clip(target, _TARGET_CHARS),
            details=_plain(dict(details)) if details is not None else {},
            ip=_clip(ip, _IP_CHARS),
        )
        try:
            with self.db.session() as session:
                session.add(event)
                session.commit()
        except SQLAlchemyError as exc:
            raise StorageError(f"could not write the audit log: {exc}") from exc

    def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        action: str | None = None,
        user_id: int | None = None,
    ) -> builtins.list[AuditEvent]:
        """Newest first; ``limit`` is capped at MAX_LIST_LIMIT."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(N_("limit must be a whole number >= 1"))
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput(N_("offset must be a whole number >= 0"))
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        if action is not None:
            query = query.where(AuditEvent.action == action)
        if user_id is not None:
            query = query.where(AuditEvent.user_id == user_id)
        query = query.limit(min(limit, MAX_LIST_LIMIT)).offset(offset)
        try:
            with self.db.session() as session:
                return builtins.list(session.scalars(query).all())
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the audit log: {exc}") from exc


def _actor_name(actor: Principal | None) -> str | None:
    return actor.username if actor is not None else None
