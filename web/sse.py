"""Server-sent events for answer streams.

Each event of the answer service becomes ``event: <type>`` + ``data: <json>``. When the
client goes away the WSGI server fails the next write and closes this generator; closing
sets the request's cancel event and closes the answer stream, which gives the model slot
back within one token.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator

from flask import Response, stream_with_context

from qa.answering.events import AnswerEvent, ErrorEvent
from qa.errors import DocqaError, InternalError
from web.i18n import error_text

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    # nginx and similar proxies would otherwise buffer the stream into one late response
    "X-Accel-Buffering": "no",
}


def format_event(event: AnswerEvent) -> str:
    wire = event.to_json()
    if isinstance(event, ErrorEvent):
        wire["message"] = error_text(event.error)  # in the reader's language
    data = json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.type}\ndata: {data}\n\n"


def guarded(events: Iterable[AnswerEvent], cancel: threading.Event) -> Iterator[AnswerEvent]:
    """The events, with a failure after the first byte turned into an ``error`` event."""
    iterator = iter(events)
    try:
        yield from iterator
    except DocqaError as exc:
        yield ErrorEvent(exc)
    except Exception:
        log.exception("answer stream failed")
        yield ErrorEvent(InternalError("an internal error occurred"))
    finally:
        cancel.set()
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def sse_response(events: Iterable[AnswerEvent], cancel: threading.Event) -> Response:
    def body() -> Iterator[str]:
        for event in guarded(events, cancel):
            yield format_event(event)

    return Response(stream_with_context(body()), mimetype="text/event-stream", headers=SSE_HEADERS)
