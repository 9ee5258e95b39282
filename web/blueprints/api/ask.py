"""``POST /api/v1/ask``: one question, answered as a server-sent event stream or as JSON.

The body is ``{"question", "collection_ids"?, "chat_id"?, "stream"?, "k"?, "temperature"?,
"top_p"?, "max_tokens"?, "system_prompt"?}``. Options the body leaves out come from the
user's saved preferences, then from the admin's default system prompt, then from the
answer service's own defaults. ``stream`` defaults to true when the client accepts
``text/event-stream`` (the portal), else the answer comes back as one JSON object.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

from flask import Response, g, jsonify, request

from qa.answer import MAX_QUESTION_CHARS, AskOptions, Event
from qa.app_config import MAX_SYSTEM_PROMPT_CHARS
from qa.asking import resolve_options
from qa.errors import (
    Busy,
    Cancelled,
    DocqaError,
    GenerationError,
    IndexUnavailable,
    InvalidInput,
    NotFound,
    Unavailable,
)
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.requests import client_ip, field_float, field_int, field_int_list, field_str, json_body
from web.services import WebServices, services
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


def _collect(events: Iterator[Event], cancel: threading.Event, chat_id: str | None) -> Event:
    """The whole stream as one JSON object; an ``error`` event becomes its HTTP error."""
    sources: list[Event] = []
    citations: Event | None = None
    done: Event | None = None
    try:
        for event in events:
            kind = event.get("type")
            if kind == "sources":
                sources = event["sources"]
            elif kind == "citations":
                citations = event
            elif kind == "done":
                done = event
            elif kind == "error":
                raise _stream_error(event)
    finally:
        cancel.set()
        close = getattr(events, "close", None)
        if close is not None:
            close()  # writes the chat record and audit entry now, not at garbage collection
    if citations is None or done is None:
        raise GenerationError("the answer stream ended early")
    return {
        "answer": citations["text"],
        "sources": sources,
        "citations": citations["citations"],
        "invalid": citations["invalid"],
        "highlights": citations["highlights"],
        "mode": done.get("mode"),
        "chat_id": chat_id,
        "done": {k: v for k, v in done.items() if k != "type"},
    }


_BUSY_SECONDS = re.compile(r"(\d+)\s*s\b")


def _stream_error(event: Event) -> DocqaError:
    """The exception an ``error`` event stands for, so JSON clients get the same status."""
    code = str(event.get("code") or "")
    message = str(event.get("message") or "the answer failed")
    if code == "busy":
        match = _BUSY_SECONDS.search(message)
        return Busy(int(match.group(1)) if match else 5)
    simple: dict[str, type[DocqaError]] = {
        InvalidInput.code: InvalidInput,
        NotFound.code: NotFound,
        IndexUnavailable.code: IndexUnavailable,
        Cancelled.code: Cancelled,
    }
    if code in simple:
        return simple[code](message)
    if code == Unavailable.code:
        return Unavailable(message)
    return GenerationError(message)
