"""A signed-in user's question: access filter, chat history, answer stream, records.

Portal, REST API and OpenAI-compatible endpoint all come through here, so each of them
applies the same rules:

- only collections the caller may read *now* are searched (grants are read from the DB on
  every question, so a revoked grant or a deleted collection stops answering at once);
  naming a collection the caller may not read is NotFound, never an empty answer;
- a chat's earlier turns become the prompt history, and the question and the answer
  (partial when the client went away) are stored in the chat;
- every question is written to the audit log with the ids of the documents it returned.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from qa.accounts.access import AccessService
from qa.accounts.app_config import AppConfig
from qa.accounts.audit import AuditLog
from qa.accounts.users import Principal
from qa.answering.answer_service import AnswerService, AskOptions
from qa.answering.chats import ChatService
from qa.answering.events import AnswerCollector, AnswerEvent, Done, slim_source
from qa.answering.prompt import Message
from qa.errors import InvalidInput, NotFound
from qa.messages import N_

Observer = Callable[[AnswerEvent], None]

#: answer options a user may save as preferences (``qa.accounts.users``) or send per request
PREFERRED_OPTIONS = ("k", "temperature", "top_p", "max_tokens", "system_prompt")


def resolve_options(given: Mapping[str, Any], preferences: Mapping[str, Any]) -> AskOptions:
    """What the request says, else what the user saved, else ``AskOptions``' defaults.

    A blank system prompt means "the default"; the admins' default prompt is applied by
    ``QuestionService.ask`` when none is chosen here. Ranges are validated by the answer
    service (InvalidInput).
    """
    chosen: dict[str, Any] = {}
    for name in PREFERRED_OPTIONS:
        value = given.get(name)
        if name == "system_prompt" and isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            value = preferences.get(name)
        if value is not None:
            chosen[name] = value
    if given.get("seed") is not None:
        chosen["seed"] = given["seed"]
    return AskOptions(**chosen)


class QuestionService:
    def __init__(
        self,
        answers: AnswerService,
        access: AccessService,
        chats: ChatService,
        audit: AuditLog,
        *,
        config: AppConfig | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.answers = answers
        #: holds the admins' default system prompt, read per question (changes apply at once)
        self.config = config
        self.access = access
        self.chats = chats
        self.audit = audit
        #: sees every event (the web app counts time to first token, tokens/s, queueing)
        self.observer = observer

    def allowed_collections(self, p: Principal, requested: Sequence[int] | None) -> list[int]:
        readable = self.access.readable_collection_ids(p)
        if not requested:
            return readable
        wanted: set[int] = set()
        for cid in requested:
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise InvalidInput(
                    N_("collection ids are integers, got %(value)s", value=repr(cid))
                )
            wanted.add(cid)
        hidden = sorted(wanted - set(readable))
        if hidden:
            raise NotFound(N_("no collection with id %(id)s", id=hidden[0]))
        return sorted(wanted)

    def ask(
        self,
        p: Principal,
        question: str,
        *,
        collection_ids: Sequence[int] | None = None,
        options: AskOptions | None = None,
        chat_id: str | None = None,
        history: Sequence[Message] = (),
        cancel: threading.Event | None = None,
        ip: str | None = None,
        channel: str = "portal",
    ) -> Iterator[AnswerEvent]:
        """Check everything, then return the event stream; input errors raise before it."""
        if not isinstance(question, str):
            raise InvalidInput(N_("the question must be a string"))
        ids = self.allowed_collections(p, collection_ids)
        if not ids:
            raise InvalidInput(N_("you may not read any collection yet; ask an administrator"))
        if chat_id is not None:
            self.chats.get(p.user_id, chat_id)  # NotFound for another user's chat
            history = self.chats.history(p.user_id, chat_id)
        options = options or AskOptions()
        if not options.system_prompt and self.config is not None:
            default = self.config.default_system_prompt()
            if default:
                options = replace(options, system_prompt=default)
        events = self.answers.ask(
            question,
            ids,
            options,
            history=history,
            # The KV cache of a chat's earlier turns is kept per user and chat.
            chat_id=f"{p.user_id}:{chat_id}" if chat_id else None,
            cancel=cancel,
        )
        if chat_id is not None:
            self.chats.add_message(p.user_id, chat_id, "user", question.strip())
        return self._record(p, question, ids, events, chat_id, ip, channel)

    def _record(
        self,
        p: Principal,
        question: str,
        ids: list[int],
        events: Iterator[AnswerEvent],
        chat_id: str | None,
        ip: str | None,
        channel: str,
    ) -> Iterator[AnswerEvent]:
        said = AnswerCollector()
        stored = False
        try:
            for event in events:
                said.feed(event)
                if isinstance(event, Done) and chat_id is not None:
                    # Stored before the last event goes out, so the client learns the
                    # answer's id (its feedback names it) without reading the chat again.
                    stored = True
                    with contextlib.suppress(NotFound):  # the chat was deleted meanwhile
                        event = replace(event, message_id=self._store(p, chat_id, said))
                if self.observer is not None:
                    self.observer(event)
                yield event
        finally:
            # Also reached when the client goes away (GeneratorExit): what was said so far
            # is kept, marked as cut off.
            events_close = getattr(events, "close", None)
            if events_close is not None:
                events_close()
            if chat_id is not None and not stored:
                self._store(p, chat_id, said)
            sources = [slim_source(s) for s in said.sources]
            self.audit.record(
                "question",
                actor=p,
                details={
                    "question": question[:500],
                    "collections": ids,
                    "document_ids": sorted({str(s["document_id"]) for s in sources}),
                    "chat_id": chat_id,
                    "channel": channel,
                    "finish_reason": said.finish_reason,
                    "outcome": said.outcome,
                },
                ip=ip,
            )

    def _store(self, p: Principal, chat_id: str, said: AnswerCollector) -> int:
        """The answer as said so far, as the chat's next message; its id."""
        meta: dict[str, Any] = {
            "sources": [slim_source(s) for s in said.sources],
            "citations": said.citations.citations if said.citations else [],
            "highlights": said.citations.highlights if said.citations else [],
            "mode": said.done.mode if said.done else self.answers.mode,
            "model": said.done.model if said.done else None,
            "finish_reason": said.finish_reason,
        }
        if said.error is not None:
            meta["error"] = {"code": said.error.code, "message": said.error.message}
        message = self.chats.add_message(
            p.user_id, chat_id, "assistant", said.text, meta, outcome=said.outcome
        )
        return message.id
