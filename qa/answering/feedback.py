"""Feedback on answers: thumbs up or down with an optional comment, and the admins' view.

A user votes on an answer in their own chat (someone else's answer is a ``NotFound``,
like their chat). The question, the answer, its sources, mode and model are copied into
the feedback row, so it stays readable after the chat is deleted. Voting again on the same
answer replaces the vote. Admins list feedback with filters and export it as CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from qa.accounts.users import Principal
from qa.answering.chats import ASSISTANT, USER
from qa.errors import InvalidInput, NotFound
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import AnswerFeedback, Chat, ChatMessage, utcnow

RATINGS = ("up", "down")
MAX_COMMENT_CHARS = 2000
MAX_FEEDBACK_LISTED = 500
#: the CSV's columns, in order
CSV_COLUMNS = (
    "created_at",
    "username",
    "rating",
    "comment",
    "question",
    "answer",
    "sources",
    "mode",
    "model",
    "outcome",
)


@dataclass(frozen=True)
class FeedbackFilter:
    rating: str | None = None
    username: str | None = None
    with_comment: bool = False

    def __post_init__(self) -> None:
        if self.rating is not None:
            _check_rating(self.rating)


def _check_rating(rating: str) -> None:
    if rating not in RATINGS:
        raise InvalidInput(N_("rating must be one of %(ratings)s", ratings=", ".join(RATINGS)))


def _check(rating: str, comment: str | None) -> tuple[str, str]:
    _check_rating(rating)
    text = (comment or "").replace("\x00", "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidInput(N_("comments are at most %(max)s characters", max=MAX_COMMENT_CHARS))
    return rating, text


class FeedbackService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def vote(
        self, p: Principal, chat_id: str, message_id: int, rating: str, comment: str | None = None
    ) -> AnswerFeedback:
        """Record (or replace) ``p``'s vote on an answer of their chat."""
        rating, text = _check(rating, comment)
        with self.db.session() as session:
            chat = session.get(Chat, chat_id) if isinstance(chat_id, str) else None
            message = session.get(ChatMessage, message_id)
            if (
                chat is None
                or chat.user_id != p.user_id
                or message is None
                or message.chat_id != chat.id
                or message.role != ASSISTANT
            ):
                raise NotFound(
                    N_("no answer %(id)s in chat %(chat)s", id=message_id, chat=repr(chat_id))
                )
            question = session.scalar(
                select(ChatMessage.content)
                .where(
                    ChatMessage.chat_id == chat.id,
                    ChatMessage.role == USER,
                    ChatMessage.id < message.id,
                )
                .order_by(ChatMessage.id.desc())
                .limit(1)
            )
            row = session.scalar(
                select(AnswerFeedback).where(
                    AnswerFeedback.user_id == p.user_id, AnswerFeedback.message_id == message.id
                )
            )
            meta = message.meta or {}
            if row is None:
                row = AnswerFeedback(user_id=p.user_id, message_id=message.id)
                session.add(row)
            row.username = p.username
            row.rating, row.comment = rating, text
            row.question, row.answer = question or "", message.content
            row.sources = [_slim(s) for s in meta.get("sources") or [] if isinstance(s, dict)]
            row.mode = meta.get("mode") if isinstance(meta.get("mode"), str) else None
            row.model = meta.get("model") if isinstance(meta.get("model"), str) else None
            row.outcome = message.outcome
            row.updated_at = utcnow()
            session.commit()
            session.refresh(row)
            session.expunge(row)
            return row

    def votes(self, p: Principal, chat_id: str) -> dict[int, AnswerFeedback]:
        """``p``'s votes on the answers of one of their chats, by message id."""
        with self.db.session() as session:
            chat = session.get(Chat, chat_id) if isinstance(chat_id, str) else None
            if chat is None or chat.user_id != p.user_id:
                raise NotFound(N_("no chat %(id)s", id=repr(chat_id)))
            rows = session.scalars(
                select(AnswerFeedback)
                .join(ChatMessage, ChatMessage.id == AnswerFeedback.message_id)
                .where(ChatMessage.chat_id == chat.id, AnswerFeedback.user_id == p.user_id)
            ).all()
            for row in rows:
                session.expunge(row)
            return {r.message_id: r for r in rows if r.message_id is not None}

    def _query(self, where: FeedbackFilter) -> Select[AnswerFeedback]:
        query = select(AnswerFeedback)
        if where.rating is not None:
            query = query.where(AnswerFeedback.rating == where.rating)
        if where.username:
            query = query.where(AnswerFeedback.username == where.username)
        if where.with_comment:
            query = query.where(AnswerFeedback.comment != "")
        return query.order_by(AnswerFeedback.updated_at.desc(), AnswerFeedback.id.desc())

    def list(self, where: FeedbackFilter, limit: int = MAX_FEEDBACK_LISTED) -> list[AnswerFeedback]:
        with self.db.session() as session:
            rows = list(session.scalars(self._query(where).limit(limit)).all())
            for row in rows:
                session.expunge(row)
            return rows

    def counts(self) -> dict[str, int]:
        """Votes by rating, counted by the database."""
        query = select(AnswerFeedback.rating, func.count()).group_by(AnswerFeedback.rating)
        with self.db.session() as session:
            found = {str(rating): int(n) for rating, n in session.execute(query).all()}
        return {r: found.get(r, 0) for r in RATINGS}

    def csv_rows(self, where: FeedbackFilter) -> Iterator[str]:
        """The filtered feedback as CSV (header first), streamed row by row."""
        with self.db.session() as session:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            yield _drain(buffer)
            for row in session.scalars(self._query(where)).yield_per(200):
                writer.writerow(_csv_values(row))
                yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_values(row: AnswerFeedback) -> list[str]:
    sources = "; ".join(_source_text(s) for s in row.sources or [])
    values: list[Any] = [
        row.created_at.isoformat() if isinstance(row.created_at, datetime) else "",
        row.username,
        row.rating,
        row.comment,
        row.question,
        row.answer,
        sources,
        row.mode or "",
        row.model or "",
        row.outcome or "",
    ]
    return [_no_formula(str(v)) for v in values]


def _no_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula (=, +, -, @ first) is quoted as text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _slim(source: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "document_id", "document_name", "title", "collection", "page_start", "page_end")
    return {k: source.get(k) for k in keys if k in source}


def _source_text(source: dict[str, Any]) -> str:
    name = source.get("document_name") or source.get("title") or "?"
    page = source.get("page_start")
    return f"[{source.get('n')}] {name}" + (f" p. {page}" if page else "")
