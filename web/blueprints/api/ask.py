"""``POST /api/v1/ask``: one question, answered as a server-sent event stream or as JSON.

The body is ``{"question", "collection_ids"?, "chat_id"?, "stream"?, "k"?, "temperature"?,
"top_p"?, "max_tokens"?, "system_prompt"?}``. Options the body leaves out come from the
user's saved preferences, then from the admin's default system prompt, then from the
answer service's own defaults. ``stream`` defaults to true when the client accepts
``text/event-stream`` (the portal), else the answer comes back as one JSON object.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from flask import Response, g, jsonify, request

from qa.answering.answer_service import AskOptions
from qa.answering.events import AnswerCollector, AnswerEvent, ErrorEvent
from qa.answering.question_service import resolve_options
from qa.errors import (
    GenerationError,
    InvalidInput,
)
from qa.limits import MAX_QUESTION_CHARS, MAX_SYSTEM_PROMPT_CHARS
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.extensions import WebServices, services
from web.requests import client_ip, field_float, field_int, field_int_list, field_str, json_body
from web.sse import sse_response

#: the option fields a body may carry, and the preference each falls back to
MAX_CHAT_ID_CHARS = 64


@bp.post("/ask")
@login_required
def ask() -> Response:
    p = current_principal()
    svc = services()
    data = json_body()
    question = field_str(data, "question", max_len=MAX_QUESTION_CHARS)
    assert question is not None  # required=True
    collection_ids = field_int_list(data, "collection_ids")
    chat_id = field_str(data, "chat_id", required=False, max_len=MAX_CHAT_ID_CHARS)
    stream = _wants_stream(data)
    options = _options(data, svc, p.user_id)
    svc.limiter.hit("question", f"user:{p.user_id}", svc.settings.rate_questions_per_min)
    cancel = threading.Event()
    events = svc.questions.ask(
        p,
        question,
        collection_ids=collection_ids,
        options=options,
        chat_id=chat_id,
        cancel=cancel,
        ip=client_ip(),
        channel="api" if g.get("auth_kind") == "token" else "portal",
    )
    if stream:
        return sse_response(events, cancel)
    return jsonify(_collect(events, cancel, chat_id))


def _wants_stream(data: dict[str, Any]) -> bool:
    value = data.get("stream")
    if value is None:
        return "text/event-stream" in request.headers.get("Accept", "")
    if not isinstance(value, bool):
        raise InvalidInput("'stream' must be true or false")
    return value


def _options(data: dict[str, Any], svc: WebServices, user_id: int) -> AskOptions:
    """Body first, then saved preferences (then the admin default prompt, in the service)."""
    given: dict[str, Any] = {
        "k": field_int(data, "k"),
        "temperature": field_float(data, "temperature"),
        "top_p": field_float(data, "top_p"),
        "max_tokens": field_int(data, "max_tokens"),
        "system_prompt": field_str(
            data, "system_prompt", required=False, max_len=MAX_SYSTEM_PROMPT_CHARS
        ),
    }
    return resolve_options(given, svc.accounts.preferences(user_id))


def _collect(
    events: Iterator[AnswerEvent], cancel: threading.Event, chat_id: str | None
) -> dict[str, Any]:
    """The whole stream as one JSON object; an ``error`` event becomes its HTTP error."""
    said = AnswerCollector()
    try:
        for event in events:
            said.feed(event)
            if isinstance(event, ErrorEvent):
                raise event.error  # JSON clients get the status a streamed error stands for
    finally:
        cancel.set()
        close = getattr(events, "close", None)
        if close is not None:
            close()  # writes the chat record and audit entry now, not at garbage collection
    if said.citations is None or said.done is None:
        raise GenerationError("the answer stream ended early")
    return {
        "answer": said.citations.text,
        "sources": said.sources,
        "citations": said.citations.citations,
        "invalid": said.citations.invalid,
        "highlights": said.citations.highlights,
        "mode": said.done.mode,
        "chat_id": chat_id,
        "done": said.done.fields(),
    }
