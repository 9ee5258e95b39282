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
from qa.errors import GenerationError
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.contracts.api import QUESTION_ERRORS, AskEvent, AskRequest, AskResponse
from web.contracts.operation import Reply, operation
from web.extensions import WebServices, services
from web.requests import client_ip
from web.sse import sse_response

ANSWER = Reply(
    AskResponse,
    "JSON, or server-sent events (AskEvent) when Accept includes text/event-stream or "
    "stream is true",
    media={"text/event-stream": AskEvent},
)
#: the body's fields that are answer options (the preferences fill in the rest)
OPTION_FIELDS = ("k", "temperature", "top_p", "max_tokens", "system_prompt")


@bp.post("/ask")
@login_required
@operation(
    "Ask a question over the collections the caller may read",
    "ask",
    {200: ANSWER},
    errors=QUESTION_ERRORS,
    body=AskRequest,
)
def ask(body: AskRequest) -> Response:
    p = current_principal()
    svc = services()
    options = _options(body, svc, p.user_id)
    svc.limiter.hit("question", f"user:{p.user_id}", svc.settings.rate_questions_per_min)
    cancel = threading.Event()
    events = svc.questions.ask(
        p,
        body.question,
        collection_ids=body.collection_ids,
        options=options,
        chat_id=body.chat_id,
        cancel=cancel,
        ip=client_ip(),
        channel="api" if g.get("auth_kind") == "token" else "portal",
    )
    if _wants_stream(body):
        return sse_response(events, cancel)
    return jsonify(_collect(events, cancel, body.chat_id))


def _wants_stream(body: AskRequest) -> bool:
    if body.stream is None:
        return "text/event-stream" in request.headers.get("Accept", "")
    return body.stream


def _options(body: AskRequest, svc: WebServices, user_id: int) -> AskOptions:
    """Body first, then saved preferences (then the admin default prompt, in the service)."""
    given = body.model_dump(include=set(OPTION_FIELDS))
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
        "outcome": said.done.outcome,
        "chat_id": chat_id,
        "done": said.done.fields(),
    }
