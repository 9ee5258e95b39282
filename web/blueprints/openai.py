"""An OpenAI-compatible endpoint (``/v1``), so existing chat clients and SDKs can ask docqa.

    GET  /v1/models             "docqa" (every collection the caller may read) and one
                                "docqa/<collection slug>" per readable collection (URL-safe,
                                see qa.library.slugs; the collection's own name is ``name``)
    POST /v1/chat/completions   the last user message is the question, earlier user and
                                assistant turns the history, the first system message the
                                system prompt; the model name picks the collection(s)

Authentication is the same as the REST API: ``Authorization: Bearer dq_...`` (what the
OpenAI SDKs send as the API key) or a signed-in session. Answers go through
``QuestionService.ask`` like every other channel, so access control, audit and rate limits
are identical. Replies carry three extra top-level fields, ``citations``, ``sources`` and
``outcome`` (``answered``, or ``not_found`` with the decline sentence as the content).
Errors keep docqa's ``{"error": {"code", "message"}}`` and add OpenAI's ``type``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from qa.accounts.users import Principal
from qa.answering.answer_service import AskOptions
from qa.answering.events import (
    AnswerCollector,
    AnswerEvent,
    ErrorEvent,
    Queued,
    Token,
    slim_source,
)
from qa.answering.prompt import Message
from qa.answering.question_service import resolve_options
from qa.errors import DocqaError, InvalidInput, NotFound, Unavailable
from qa.library.slugs import find_by_slug, slugs
from qa.messages import N_
from web.auth import current_principal, login_required
from web.contracts.api import QUESTION_ERRORS
from web.contracts.openai import (
    SYSTEM_ROLES,
    TURN_ROLES,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ModelList,
)
from web.contracts.operation import Reply, operation
from web.extensions import WebServices, services
from web.i18n import error_text
from web.requests import client_ip
from web.sse import SSE_HEADERS, guarded

bp = Blueprint("openai", __name__, url_prefix="/v1")

MODEL = "docqa"
MODEL_PREFIX = MODEL + "/"
#: ``created`` of the models: they exist as long as the process serves them
_STARTED = int(time.time())
#: earlier messages kept as history: the same six turns a stored chat gives the prompt
MAX_HISTORY_MESSAGES = 12
#: stream error codes worth retrying: answered 503 + Retry-After when not streaming
RETRYABLE_CODES = frozenset({"busy", "cancelled", "unavailable", "index_unavailable"})


# -- routes -------------------------------------------------------------------------------


@bp.get("/models")
@login_required
@operation(
    "Models: 'docqa' (all readable collections) and 'docqa/<collection slug>'",
    "openai",
    {200: ModelList},
)
def list_models() -> Response:
    views = services().library.collections(current_principal())
    by_id = slugs(views)
    named = [(MODEL, "docqa: all collections")] + [
        (MODEL_PREFIX + by_id[v.id], f"docqa: {v.name}") for v in views
    ]
    data = [
        {"id": i, "object": "model", "created": _STARTED, "owned_by": "docqa", "name": n}
        for i, n in named
    ]
    return jsonify({"object": "list", "data": data})


COMPLETION = Reply(
    ChatCompletion,
    "A chat.completion, or chunks as server-sent events",
    media={"text/event-stream": ChatCompletionChunk},
    stream_end="[DONE]",
)


@bp.post("/chat/completions")
@login_required
@operation(
    "OpenAI-compatible chat completion over the documents",
    "openai",
    {200: COMPLETION},
    errors=QUESTION_ERRORS,
    body=ChatCompletionRequest,
    description=(
        "The model selects the collections: 'docqa' searches every collection the caller "
        "may read, 'docqa/<slug>' one of them (the ids GET /v1/models lists; the exact "
        "collection name is accepted too). An unknown or unreadable model is 404."
    ),
)
def chat_completions(body: ChatCompletionRequest) -> Response:
    said = split_messages(body.messages)
    svc, p = services(), current_principal()
    collection_ids = collections_for_model(svc, p, body.model)
    options = ask_options(svc, p, body, said.system_prompt)
    svc.limiter.hit("question", f"user:{p.user_id}", svc.settings.rate_questions_per_min)
    cancel = threading.Event()
    events = svc.questions.ask(
        p,
        said.question,
        collection_ids=collection_ids,
        options=options,
        history=said.history,
        cancel=cancel,
        ip=client_ip(),
        channel="openai",
    )
    head = ChunkHead(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = stream_chunks(events, cancel, head, include_usage=usage)
        return Response(
            stream_with_context(chunks), mimetype="text/event-stream", headers=SSE_HEADERS
        )
    return jsonify(completion(collect(guarded(events, cancel)), head))


@bp.after_app_request
def add_openai_error_type(resp: Response) -> Response:
    """OpenAI clients read ``error.type``; our error bodies get it here, so every /v1 error
    (also 404/405 from routing, which never reach this blueprint) has it, and web.errors
    stays the one place that maps errors to statuses."""
    if not request.path.startswith("/v1/") or resp.status_code < 400:
        return resp
    if not resp.is_json or resp.is_streamed:
        return resp
    body = resp.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "type" not in error:
        error["type"] = error_type(resp.status_code)
        resp.set_data(current_app.json.dumps(body))
    return resp


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """What the messages say: the system prompt, the history and the question."""

    system_prompt: str | None
    history: list[Message]
    question: str


def split_messages(messages: list[ChatCompletionMessage]) -> Conversation:
    """The first system message is the system prompt (later ones are ignored); the last
    message must be the user's question; the turns before it are the history."""
    system = next((m.text() for m in messages if m.role in SYSTEM_ROLES), None)
    turns: list[Message] = [
        {"role": m.role, "content": m.text()} for m in messages if m.role in TURN_ROLES
    ]
    if not turns or turns[-1]["role"] != "user":
        raise InvalidInput(N_("the last message must be the user's question"))
    question = turns.pop()["content"]
    if not question.strip():
        raise InvalidInput(N_("the question (the last user message) is empty"))
    # A blank system prompt means "the default", as in the preferences and /api/v1/ask.
    system = system if system is not None and system.strip() else None
    return Conversation(system, turns[-MAX_HISTORY_MESSAGES:], question)


def collections_for_model(svc: WebServices, p: Principal, model: str) -> list[int] | None:
    """None (every readable collection) for "docqa", one id for "docqa/<slug>"."""
    if model == MODEL:
        return None
    if model.startswith(MODEL_PREFIX):
        found = find_by_slug(svc.library.collections(p), model[len(MODEL_PREFIX) :])
        if found is not None:
            return [found]
    # A collection the caller may not read is reported exactly like a missing one.
    raise NotFound(
        N_("the model %(model)s does not exist; GET /v1/models lists yours", model=repr(model))
    )


def ask_options(
    svc: WebServices, p: Principal, req: ChatCompletionRequest, system_prompt: str | None
) -> AskOptions:
    """The request's values first, then the user's preferences, then the defaults."""
    given = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        # max_completion_tokens is the newer OpenAI name for the same limit
        "max_tokens": req.max_tokens or req.max_completion_tokens,
        "system_prompt": system_prompt,
        "seed": req.seed,
    }
    return resolve_options(given, svc.accounts.preferences(p.user_id))


# -- the answer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkHead:
    """What every object of one completion shares."""

    id: str
    created: int
    model: str


class Answer(AnswerCollector):
    """The answer stream folded by the shared collector, read the way OpenAI clients expect."""

    @property
    def openai_finish_reason(self) -> str:
        """OpenAI's reasons: ``length`` when the token limit cut the answer, else ``stop``."""
        reason = self.done.finish_reason if self.done is not None else None
        return "length" if reason == "length" else "stop"

    @property
    def usage(self) -> dict[str, int]:
        """Model tokens; zeros for an extractive answer or a decline before the model (no
        model ran), since clients read ``usage`` unconditionally."""
        done = self.done
        prompt = (done.prompt_tokens if done is not None else None) or 0
        written = (done.completion_tokens if done is not None else None) or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": written,
            "total_tokens": prompt + written,
        }

    def extras(self) -> dict[str, Any]:
        """docqa's own fields; ``outcome`` says whether the documents supported an answer
        (``not_found``: the content is the decline sentence, the sources the closest)."""
        return {
            "citations": self.citations.citations if self.citations is not None else [],
            "sources": [slim_source(s) for s in self.sources],
            "outcome": self.outcome,
        }


def collect(events: Iterable[AnswerEvent]) -> Answer:
    answer = Answer()
    answer.feed_all(events)
    if answer.error is not None:
        raise stream_error(answer.error)
    return answer


def stream_error(event: ErrorEvent) -> DocqaError:
    """The exception for an ``error`` event, keeping its code (web.errors picks the status)."""
    if event.code in RETRYABLE_CODES:
        exc: DocqaError = Unavailable(event.message, retry_after_s=5)
        exc.code = event.code
        return exc
    return event.error


def completion(answer: Answer, head: ChunkHead) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "logprobs": None,
                "finish_reason": answer.openai_finish_reason,
            }
        ],
        "usage": answer.usage,
    }
    body.update(answer.extras())
    return body


def chunk(
    head: ChunkHead, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def data_line(obj: dict[str, Any] | str) -> str:
    """OpenAI framing: ``data:`` lines only, no ``event:`` names."""
    payload = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {payload}\n\n"


def stream_chunks(
    events: Iterable[AnswerEvent],
    cancel: threading.Event,
    head: ChunkHead,
    *,
    include_usage: bool,
) -> Iterator[str]:
    """Role chunk, one content chunk per token, the final chunk, ``[DONE]``.

    Closing this generator (the client went away) closes ``guarded``, which sets ``cancel``
    and closes the answer stream, so the model slot is given back within one token.
    """
    # guarded is a generator function: the cast only tells mypy it has close().
    stream = cast("Generator[AnswerEvent, None, None]", guarded(events, cancel))
    answer = Answer()
    try:
        for i, event in enumerate(stream):
            if i == 0:
                # Sent once the stream has started (retrieval is done, in milliseconds), so
                # a client that leaves after its first byte always closes a started
                # stream: the question is recorded and the model slot given back.
                yield data_line(chunk(head, {"role": "assistant", "content": ""}))
            answer.feed(event)
            if isinstance(event, Token):
                yield data_line(chunk(head, {"content": event.text}))
            elif isinstance(event, Queued):
                # An SSE comment: clients ignore it, proxies see the connection is alive.
                yield f": queued, position {event.position}\n\n"
            elif isinstance(event, ErrorEvent):
                yield data_line({"error": _stream_error_body(event)})
                break
        else:
            yield from _final_chunks(answer, head, include_usage)
        yield data_line("[DONE]")
    finally:
        stream.close()
        cancel.set()  # also when the stream never started (closing it then runs nothing)


def _final_chunks(answer: Answer, head: ChunkHead, include_usage: bool) -> Iterator[str]:
    final = chunk(head, {}, answer.openai_finish_reason)
    final.update(answer.extras())
    yield data_line(final)
    if include_usage:
        # As OpenAI does with stream_options.include_usage: a last chunk with no choices.
        usage_chunk = chunk(head, {})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = answer.usage
        yield data_line(usage_chunk)


def _stream_error_body(event: ErrorEvent) -> dict[str, Any]:
    status = 503 if event.code in RETRYABLE_CODES else 500
    return {"code": event.code, "message": error_text(event.error), "type": error_type(status)}


# -- errors -------------------------------------------------------------------------------

_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for a status: what its SDKs map to exception classes."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    if status >= 500:
        return "server_error"
    return "invalid_request_error"
