"""Every error becomes a clear answer: JSON ``{"error": {"code", "message"}}`` for API
clients, a small HTML page for the browser. Nothing a client sends should produce a 500;
an unexpected exception is logged with its traceback and answered without internals.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from qa.errors import (
    Busy,
    Conflict,
    DocqaError,
    IndexUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from web.i18n import error_text, status_title

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[DocqaError], int]] = [
    (TooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (RateLimited, 429),
    (Busy, 503),
    (Unavailable, 503),
    (IndexUnavailable, 503),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "headers_too_large",
}

API_PREFIXES = ("/api/", "/v1/")


def status_for(exc: DocqaError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def wants_json() -> bool:
    if request.path.startswith(API_PREFIXES) or request.path in ("/healthz", "/readyz"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" or request.is_json


def error_response(
    status: int, code: str, message: str, retry_after: int | None = None
) -> Response:
    if wants_json():
        resp = jsonify({"error": {"code": code, "message": message}})
    else:
        resp = Response(
            render_template(
                "error.html", status=status, title=status_title(status), code=code, message=message
            ),
            mimetype="text/html",
        )
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _docqa_error(exc: DocqaError) -> Response:
    status = status_for(exc)
    if status == 500:
        log.error("internal error: %s", exc, exc_info=exc)
    retry = getattr(exc, "retry_after_s", None)
    message = error_text(exc)
    return error_response(status, exc.code, message, retry if isinstance(retry, int) else None)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is larger than the server accepts"
    resp = error_response(status, code, message)
    if status == 405 and exc.response is None:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            resp.headers["Allow"] = ", ".join(sorted(allowed))
    return resp


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal", "an internal error occurred; it has been logged")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DocqaError, _docqa_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
