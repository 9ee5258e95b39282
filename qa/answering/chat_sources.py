"""Stored chats as their owner may read them now: revoked content stays revoked.

An answer's meta keeps the sources it cited (document, name, title, collection, pages).
Access can change after the answer was given: a grant is revoked, a group membership
ends, a document or collection is deleted. Every read of a chat therefore checks each
stored source against what the reader may read *now* (``AccessService``, the same check
asking uses) and reduces an unreadable one to ``{"n": n, "available": false}``: no name,
title, collection or position, and nothing a client could link to. Citations to it are
reduced the same way; its highlights (exact spans in the document) are left out.

The answer text itself is kept. The reader was shown it when it was generated, and it is
their own record of the conversation; cutting it would leave questions without answers and
break the prompt history the next question is built from. What is withheld is the way back
into the document (the passage, its name and the links), which is what the grant governed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qa.accounts.access import AccessService
from qa.accounts.users import Principal
from qa.answering.chats import ChatService
from qa.store.catalog import document_collections
from qa.store.db.engine import Database
from qa.store.db.models import ChatMessage

#: the meta lists whose items name a document; highlights are dropped, not reduced
_REDUCED = ("sources", "citations")


@dataclass(frozen=True)
class ReadMessage:
    """A stored message with its meta as the reader may see it now."""

    id: int
    role: str
    content: str
    meta: dict[str, Any]
    created_at: datetime | None
    #: the [n] of sources whose document the reader can no longer read
    unavailable_sources: list[int]
    #: an answer's outcome (answered / not_found); None for questions and older answers
    outcome: str | None = None


class ChatReader:
    """Reads a user's chat messages, redacting sources they may no longer read."""

    def __init__(self, chats: ChatService, access: AccessService, db: Database) -> None:
        self.chats = chats
        self.access = access
        self.db = db

    def messages(self, p: Principal, chat_id: str) -> list[ReadMessage]:
        """Every message of the caller's chat, oldest first (NotFound like ChatService)."""
        rows = self.chats.messages(p.user_id, chat_id)
        readable = self.readable_documents(p, _document_ids(rows))
        return [redact(row, readable) for row in rows]

    def readable_documents(self, p: Principal, doc_ids: set[str]) -> set[str]:
        """Those of ``doc_ids`` that exist and lie in a collection the caller may read."""
        if not doc_ids:
            return set()
        collections = set(self.access.readable_collection_ids(p))
        with self.db.session() as session:
            located = document_collections(session, sorted(doc_ids))
        return {doc for doc, coll in located.items() if coll in collections}


def redact(row: ChatMessage, readable: set[str]) -> ReadMessage:
    """The message with every source, citation and highlight outside ``readable`` withheld."""
    meta = dict(row.meta or {})
    gone: set[int] = set()
    for key in _REDUCED:
        if isinstance(meta.get(key), list):
            meta[key] = [_reduced(item, readable, gone) for item in meta[key]]
    if isinstance(meta.get("highlights"), list):
        meta["highlights"] = [h for h in meta["highlights"] if _readable(h, readable)]
    return ReadMessage(
        id=row.id,
        role=row.role,
        content=row.content,
        meta=meta,
        created_at=row.created_at,
        unavailable_sources=sorted(gone),
        outcome=row.outcome,
    )


def _reduced(item: Any, readable: set[str], gone: set[int]) -> Any:
    if not isinstance(item, Mapping) or _readable(item, readable):
        return item
    gone.add(item.get("n", 0))
    return {"n": item.get("n"), "available": False}


def _readable(item: Any, readable: set[str]) -> bool:
    # An item without a document id (not written by this version) names no document.
    doc = item.get("document_id") if isinstance(item, Mapping) else None
    return doc is None or str(doc) in readable


def _document_ids(rows: Iterable[ChatMessage]) -> set[str]:
    ids: set[str] = set()
    for row in rows:
        meta = row.meta or {}
        for key in (*_REDUCED, "highlights"):
            items = meta.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, Mapping) and item.get("document_id") is not None:
                    ids.add(str(item["document_id"]))
    return ids
