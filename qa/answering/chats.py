"""Chat history: each user's conversations, their messages, and the recent turns for a prompt.

A chat belongs to one user; every call takes the caller's user id and treats someone
else's chat exactly like a missing one (``NotFound``), so chat ids reveal nothing.
The collections stored on a chat are the user's choice, not a permission: the answer
path intersects them with the readable collections on every question.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from qa.answering.decline import OUTCOMES
from qa.answering.prompt import Message
from qa.errors import InvalidInput, NotFound
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import Chat, ChatMessage, User, utcnow

DEFAULT_TITLE = "New chat"
USER, ASSISTANT = "user", "assistant"
MESSAGE_ROLES = (USER, ASSISTANT)
MAX_TITLE_CHARS = 200
#: a chat still called DEFAULT_TITLE takes this much of its first question as its title
AUTO_TITLE_CHARS = 60
MAX_MESSAGE_CHARS = 200_000


def _check_title(title: str) -> str:
    text = " ".join(title.split()) if isinstance(title, str) else ""
    if not 1 <= len(text) <= MAX_TITLE_CHARS:
        raise InvalidInput(N_("chat titles are 1 to %(max)s characters", max=MAX_TITLE_CHARS))
    return text


def _check_collection_ids(ids: Sequence[int]) -> list[int]:
    if isinstance(ids, str | bytes) or any(
        isinstance(i, bool) or not isinstance(i, int) for i in ids
    ):
        raise InvalidInput(N_("collection_ids must be a list of integer ids"))
    return sorted(set(ids))


def _check_content(role: str, content: str) -> str:
    if role not in MESSAGE_ROLES:
        raise InvalidInput(
            N_(
                "unknown message role %(role)s; one of %(roles)s",
                role=repr(role),
                roles=", ".join(MESSAGE_ROLES),
            )
        )
    if not isinstance(content, str):
        raise InvalidInput(N_("message content must be text"))
    # NUL cannot be stored in PostgreSQL text and means nothing in a chat.
    content = content.replace("\x00", "")
    if len(content) > MAX_MESSAGE_CHARS:
        raise InvalidInput(N_("messages are at most %(max)s characters", max=MAX_MESSAGE_CHARS))
    if role == USER and not content.strip():
        raise InvalidInput(N_("a question cannot be empty"))
    return content


def _check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidInput(N_("message meta must be an object"))
    try:
        # Round trip: what is stored is exactly what comes back (tuples become lists).
        loaded: dict[str, Any] = json.loads(json.dumps(dict(meta), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(N_("message meta must be plain JSON: %(error)s", error=exc)) from exc
    return loaded


def auto_title(content: str) -> str:
    """The first AUTO_TITLE_CHARS characters of a question, on one line."""
    return " ".join(content.split())[:AUTO_TITLE_CHARS].rstrip()


class ChatService:
    """Chats and messages of one user at a time (the user id comes from the session)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, user_id: int, *, title: str | None = None, collection_ids: Sequence[int] = ()
    ) -> Chat:
        title = DEFAULT_TITLE if title is None else _check_title(title)
        ids = _check_collection_ids(collection_ids)
        with self.db.session() as session:
            if session.get(User, user_id) is None:
                raise NotFound(N_("no user with id %(id)s", id=user_id))
            now = utcnow()
            chat = Chat(
                id=uuid.uuid4().hex,
                user_id=user_id,
                title=title,
                collection_ids=ids,
                created_at=now,
                updated_at=now,
            )
            session.add(chat)
            session.commit()
            return chat

    def get(self, user_id: int, chat_id: str) -> Chat:
        with self.db.session() as session:
            return _own_chat(session, user_id, chat_id)

    def rename(self, user_id: int, chat_id: str, title: str) -> Chat:
        """Rename; does not move the chat in the list (only new messages do)."""
        title = _check_title(title)
        with self.db.session() as session:
            chat = _own_chat(session, user_id, chat_id)
            chat.title = title
            session.commit()
            return chat

    def delete(self, user_id: int, chat_id: str) -> None:
        with self.db.session() as session:
            session.delete(_own_chat(session, user_id, chat_id))
            session.commit()

    def set_collections(self, user_id: int, chat_id: str, collection_ids: Sequence[int]) -> Chat:
        """Store the picked collections (sorted, unique). Access is not checked here."""
        ids = _check_collection_ids(collection_ids)
        with self.db.session() as session:
            chat = _own_chat(session, user_id, chat_id)
            chat.collection_ids = ids
            session.commit()
            return chat

    def add_message(
        self,
        user_id: int,
        chat_id: str,
        role: str,
        content: str,
        meta: Mapping[str, Any] | None = None,
        *,
        outcome: str | None = None,
    ) -> ChatMessage:
        """Append a message and move the chat to the top of the list.

        The first question of a chat still called DEFAULT_TITLE becomes its title.
        ``outcome`` is an answer's (``answered`` / ``not_found``); questions have none.
        """
        content = _check_content(role, content)
        stored_meta = _check_meta(meta)
        if outcome is not None and (role != ASSISTANT or outcome not in OUTCOMES):
            raise InvalidInput(
                N_(
                    "an outcome is one of %(outcomes)s, and only answers have one",
                    outcomes=", ".join(OUTCOMES),
                )
            )
        with self.db.session() as session:
            chat = _own_chat(session, user_id, chat_id)
            if role == USER and chat.title == DEFAULT_TITLE and not _has_question(session, chat):
                chat.title = auto_title(content) or DEFAULT_TITLE
            now = utcnow()
            message = ChatMessage(
                chat_id=chat.id,
                role=role,
                content=content,
                meta=stored_meta,
                created_at=now,
                outcome=outcome,
            )
            chat.updated_at = now
            session.add(message)
            session.commit()
            return message

    def messages(self, user_id: int, chat_id: str) -> builtins.list[ChatMessage]:
        """Every message of the chat, oldest first."""
        with self.db.session() as session:
            chat = _own_chat(session, user_id, chat_id)
            query = select(ChatMessage).where(ChatMessage.chat_id == chat.id)
            return builtins.list(session.scalars(query.order_by(ChatMessage.id)).all())

    def history(self, user_id: int, chat_id: str, *, max_turns: int = 6) -> builtins.list[Message]:
        """The last ``max_turns`` answered questions as prompt messages, oldest first.

        Only complete turns count: a question followed by its answer (the newest one when
        it was regenerated). A question without an answer (the one being asked right now,
        or one whose generation failed) is left out, so callers may store the new question
        before or after calling this.
        """
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 0:
            raise InvalidInput(N_("max_turns must be a whole number >= 0"))
        with self.db.session() as session:
            chat = _own_chat(session, user_id, chat_id)
            if max_turns == 0:
                return []
            newest_first = session.execute(
                select(ChatMessage.role, ChatMessage.content)
                .where(ChatMessage.chat_id == chat.id)
                .order_by(ChatMessage.id.desc())
                .execution_options(yield_per=64)
            )
            turns: builtins.list[tuple[str, str]] = []
            answer: str | None = None
            for role, content in newest_first:
                if role == ASSISTANT:
                    # the newest of several answers (a regenerated one) wins
                    answer = content if answer is None else answer
                elif answer is not None:
                    turns.append((content, answer))
                    answer = None
                    if len(turns) == max_turns:
                        break
            newest_first.close()
        messages: builtins.list[Message] = []
        for question, reply in reversed(turns):
            messages.append({"role": USER, "content": question})
            messages.append({"role": ASSISTANT, "content": reply})
        return messages

    def list(self, user_id: int, search: str | None = None) -> builtins.list[Chat]:
        """The user's chats, most recently active first; with ``search``, those whose title
        or any message contains it (case-insensitive; ``%`` and ``_`` are plain text)."""
        query = select(Chat).where(Chat.user_id == user_id)
        words = (search or "").strip()
        if words:
            in_messages = exists().where(
                ChatMessage.chat_id == Chat.id,
                ChatMessage.content.icontains(words, autoescape=True),
            )
            query = query.where(or_(Chat.title.icontains(words, autoescape=True), in_messages))
        query = query.order_by(Chat.updated_at.desc(), Chat.created_at.desc(), Chat.id)
        with self.db.session() as session:
            return builtins.list(session.scalars(query).all())


def _own_chat(session: Session, user_id: int, chat_id: str) -> Chat:
    chat = session.get(Chat, chat_id) if isinstance(chat_id, str) else None
    if chat is None or chat.user_id != user_id:
        raise NotFound(N_("no chat %(id)s", id=repr(chat_id)))
    return chat


def _has_question(session: Session, chat: Chat) -> bool:
    query = select(exists().where(ChatMessage.chat_id == chat.id, ChatMessage.role == USER))
    return bool(session.scalar(query))
