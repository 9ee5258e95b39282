"""What body a request may send, decided from its headers before a byte of it is read.

    caller       endpoint                       media type            cap
    anonymous    any                            any but multipart     MAX_ANONYMOUS_BODY_BYTES
    signed in    any                            any but multipart     MAX_REQUEST_BODY_BYTES
    signed in    an upload endpoint, with       multipart/form-data   settings.max_upload_mb
                 write on its collection

Multipart anywhere else is a 415; to an upload endpoint it is a 401 without credentials,
and a 403 (or 404) without the write grant on the collection in its path. A
``Content-Length`` over the cap is a 413. A body without a length (``Transfer-Encoding:
chunked``) is read here up to its cap plus one byte: over the cap it is a 413, else it is
handed on as a body with a length (spooled to disk past MAX_REQUEST_BODY_BYTES), so no
later reader meets a body that werkzeug silently cut at the cap (a 400 from the JSON
parser, before).

Every error answer to a request that declared a body closes the connection: the server
will not read the rest (``close_unread``).
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar, cast

from flask import current_app, g, request

from qa.errors import TooLarge, Unauthenticated, UnsupportedMediaType
from qa.limits import MAX_ANONYMOUS_BODY_BYTES, MAX_REQUEST_BODY_BYTES
from qa.messages import N_
from web.extensions import services

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
MULTIPART = "multipart/form-data"
_UPLOAD_INTO = "docqa_upload_into"
_PIECE = 64 * 1024


def upload_endpoint(collection_arg: str) -> Callable[[F], F]:
    """Mark a view as taking multipart uploads into the collection named by its path
    variable ``collection_arg`` (put it right below the route decorator)."""

    def mark(view: F) -> F:
        setattr(view, _UPLOAD_INTO, collection_arg)
        return view

    return mark


def check_body() -> None:
    """``before_request``, after the caller is known and before anything reads the body."""
    cap = _cap()
    request.max_content_length = cap
    length = request.content_length
    if length is not None and length > cap:
        raise TooLarge(
            N_(
                "the request body is %(size)s bytes; the limit is %(cap)s bytes",
                size=length,
                cap=cap,
            )
        )
    if length is None and _chunked():
        _read_unsized(cap)


def _cap() -> int:
    p = g.get("principal")
    if request.mimetype != MULTIPART:
        return MAX_REQUEST_BODY_BYTES if p is not None else MAX_ANONYMOUS_BODY_BYTES
    view = current_app.view_functions.get(request.endpoint or "")
    collection_arg = getattr(view, _UPLOAD_INTO, None)
    if collection_arg is None:
        raise UnsupportedMediaType(
            N_("multipart/form-data is accepted only by upload endpoints; send JSON")
        )
    if p is None:
        raise Unauthenticated(N_("sign in or send an API token to upload"))
    # The same check the upload makes, made before its body is read: 404 for a collection
    # the caller may not see, 403 for one they may only read.
    services().access.require_write(p, (request.view_args or {})[collection_arg])
    return services().settings.max_upload_mb * 1024 * 1024


def _read_unsized(cap: int) -> None:
    environ = request.environ
    source: IO[bytes] = environ["wsgi.input"]
    # Not a context manager: it must outlive this guard, until ``release`` closes it.
    spool = tempfile.SpooledTemporaryFile(max_size=MAX_REQUEST_BODY_BYTES)  # noqa: SIM115
    g.spooled_body = spool
    size = 0
    # Each read asks for no more than the cap allows: a server's chunked reader waits
    # until it has as many bytes as asked for.
    while size <= cap and (piece := source.read(min(_PIECE, cap + 1 - size))):
        spool.write(piece)
        size += len(piece)
    if size > cap:
        raise TooLarge(N_("the request body is over the limit of %(cap)s bytes", cap=cap))
    spool.seek(0)
    environ.update({"wsgi.input": spool, "CONTENT_LENGTH": str(size)})
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ.pop("wsgi.input_terminated", None)
    request.__dict__.pop("content_length", None)  # werkzeug caches the None it saw


def release(_exc: BaseException | None = None) -> None:
    """``teardown_request``: the spooled body (a temp file past 2 MiB) goes away."""
    spool = g.pop("spooled_body", None)
    if spool is not None:
        spool.close()


def declared_body() -> bool:
    return bool(request.content_length) or _chunked()


def _chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


class CloseUnread:
    """WSGI middleware: an answer that says ``Connection: close`` really closes.

    gunicorn drops an application's hop-by-hop headers and keeps the connection alive,
    and to read the next request it would first read (and discard) the rest of a body
    that was refused unread: 60 MB of it, for a refused anonymous upload. Its
    ``start_response`` is a method of its response object, whose ``force_close`` makes it
    close instead (and say so). gunicorn documents no way for an application to ask for
    this (27.0 ignores the header; its ``keepalive = 0`` setting would close every
    connection), so this reaches for that method, and only on gunicorn's own object.
    Other servers (werkzeug's) honour the header itself.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                force_close = _gunicorn_force_close(start_response)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, *exc)

        return self.app(environ, start)


def _gunicorn_force_close(start_response: Any) -> Callable[[], object] | None:
    """gunicorn's ``Response.force_close`` behind ``start_response``; None on any other
    server, and on a gunicorn without it (then the refused body is drained as before,
    which is slow but correct, and the log says so once)."""
    owner = getattr(start_response, "__self__", None)
    if owner is None or not type(owner).__module__.startswith("gunicorn."):
        return None
    force_close = getattr(owner, "force_close", None)
    if callable(force_close):
        return cast("Callable[[], object]", force_close)
    _no_force_close()
    return None


@functools.cache
def _no_force_close() -> None:
    log.warning(
        "this gunicorn's response has no force_close(): connections after a refused"
        " body stay open and gunicorn reads the body to its end"
    )
