"""``@operation``: what one API view accepts and answers, declared once.

    @bp.post("/ask")
    @login_required
    @operation("Ask a question", "ask", {200: ASK_REPLY}, errors=(400, 404, 413, 503),
               body=AskRequest)
    def ask(body: AskRequest) -> Response: ...

The declaration is kept on the view (``declared(view)``) for ``web.openapi``; the view is
called with the validated ``body`` and ``query`` models. It goes below ``login_required``
so that a request without credentials is a 401 before its body is read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from flask import request
from pydantic import BaseModel, ValidationError

from qa.errors import InvalidInput
from qa.messages import N_
from web.contracts.invalid import invalid_input

F = TypeVar("F", bound=Callable[..., Any])
JSON = "application/json"
_ATTRIBUTE = "docqa_operation"


@dataclass(frozen=True)
class Reply:
    """One documented response: a JSON model, or other media types (None: no schema)."""

    model: type[BaseModel] | None = None
    description: str = "OK"
    media: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description
    #: a text/event-stream's last ``data`` when it is not JSON (OpenAI's "[DONE]")
    stream_end: str | None = None

    def content(self) -> dict[str, type[BaseModel] | None]:
        return {JSON: self.model, **self.media} if self.model is not None else dict(self.media)


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    replies: Mapping[int, Reply]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    #: False: an empty body is the model's defaults (``POST /chats`` from curl)
    body_required: bool = True
    query: type[BaseModel] | None = None
    description: str | None = None
    #: readable without credentials (no 401/429, ``security: []``)
    public: bool = False
    #: the request body as the description shows it, when it is not a JSON model
    raw_body: Mapping[str, Any] | None = None


def operation(
    summary: str,
    tag: str,
    replies: Mapping[int, Reply | type[BaseModel]],
    **details: Any,
) -> Callable[[F], F]:
    """Declare the view's contract (keywords: the other fields of ``Operation``)."""
    as_replies = {s: r if isinstance(r, Reply) else Reply(r) for s, r in replies.items()}
    op = Operation(summary, tag, as_replies, **details)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if op.body is not None:
                kwargs["body"] = read_body(op.body, required=op.body_required)
            if op.query is not None:
                kwargs["query"] = read_query(op.query)
            return view(*args, **kwargs)

        setattr(wrapper, _ATTRIBUTE, op)
        return cast(F, wrapper)

    return decorate


def declared(view: Callable[..., Any]) -> Operation | None:
    """The view's ``@operation`` (also through wrappers that use ``functools.wraps``)."""
    return cast("Operation | None", getattr(view, _ATTRIBUTE, None))


M = TypeVar("M", bound=BaseModel)


def read_body(model: type[M], *, required: bool = True) -> M:
    """The JSON body as ``model``; anything else is one clear InvalidInput."""
    raw = request.get_data(cache=True)
    if not raw and not required:
        return model()
    if not request.is_json:
        raise InvalidInput(N_("send a JSON object with Content-Type: application/json"))
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_input(exc, model) from None


def read_query(model: type[M]) -> M:
    # An empty value (``?limit=``) means "not given", as a browser form sends it.
    given = {name: value for name, value in request.args.items() if value != ""}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise invalid_input(exc, model, "query parameter ") from None
