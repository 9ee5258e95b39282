"""Form parsing, redirects and the console's error pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from qa.errors import DocqaError, InvalidInput
from qa.limits import MAX_INT_ID
from qa.messages import N_
from web.blueprints.admin import (
    JSON_ENDPOINTS,
    MAX_NAME_CHARS,
    Redirect,
    bp,
    log,
)
from web.errors import error_response, status_for, wants_json
from web.i18n import error_text, status_title
from web.requests import client_ip

# --- request plumbing ------------------------------------------------------------------


@bp.errorhandler(DocqaError)
def _error(exc: DocqaError) -> Response:
    """Errors inside the console: JSON for the script's endpoints, else a page with a way
    back to where the user came from (instead of the portal link of the generic page)."""
    status = status_for(exc)
    if status >= 500:
        log.error("admin console error: %s", exc, exc_info=exc)
    retry = getattr(exc, "retry_after_s", None)
    retry_after = retry if isinstance(retry, int) else None
    if request.endpoint in JSON_ENDPOINTS and not wants_json():
        # The script's endpoints answer JSON even to a fetch() that accepts anything
        # (web.errors decides by the Accept header); same shape as web.errors.
        resp = jsonify({"error": {"code": exc.code, "message": error_text(exc)}})
        resp.status_code = status
    elif wants_json():
        return error_response(status, exc.code, error_text(exc), retry_after)
    else:
        page = render_template(
            "admin/error.html",
            status=status,
            title=status_title(status),
            code=exc.code,
            message=error_text(exc),
            back=back_url(),
        )
        resp = Response(page, status=status, mimetype="text/html")
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def back_url() -> str:
    """The referring page when it is one of ours, else the console's start page."""
    ref = urlsplit(request.referrer or "")
    if ref.netloc == request.host and ref.path.startswith("/") and ref.path != request.path:
        return ref.path + (f"?{ref.query}" if ref.query else "")
    p = g.get("principal")
    if p is not None and not p.can_manage_collections:
        return url_for("admin.tokens")
    return url_for("admin.index")


def form_text(name: str, *, max_len: int = MAX_NAME_CHARS, strip: bool = True) -> str:
    """A required text field; a missing or blank one is a clear 400."""
    value = request.form.get(name)
    if value is None or not value.strip():
        raise InvalidInput(N_("the field '%(name)s' is required", name=name))
    if len(value) > max_len:
        raise InvalidInput(
            N_("the field '%(name)s' is longer than %(max)s characters", name=name, max=max_len)
        )
    return value.strip() if strip else value


def form_optional(name: str, *, max_len: int = MAX_NAME_CHARS) -> str | None:
    value = request.form.get(name)
    if value is None:
        return None
    if len(value) > max_len:
        raise InvalidInput(
            N_("the field '%(name)s' is longer than %(max)s characters", name=name, max=max_len)
        )
    return value.strip()


def parse_id(raw: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(N_("the field '%(name)s' must be a whole number", name=name)) from None
    if not 1 <= value <= MAX_INT_ID:
        raise InvalidInput(
            N_(
                "the field '%(name)s' must be an id between 1 and %(max)s",
                name=name,
                max=MAX_INT_ID,
            )
        )
    return value


def form_ids(name: str) -> list[int]:
    return [parse_id(raw, name) for raw in request.form.getlist(name)]


def form_principal() -> tuple[int | None, int | None]:
    """The ``principal`` field, ``user:<id>`` or ``group:<id>`` -> (user_id, group_id)."""
    kind, _, raw = form_text("principal", max_len=40).partition(":")
    if kind not in ("user", "group"):
        raise InvalidInput(N_("the field 'principal' must be 'user:<id>' or 'group:<id>'"))
    pid = parse_id(raw, "principal")
    return (pid, None) if kind == "user" else (None, pid)


def done(message: str, endpoint: str, **values: Any) -> Redirect:
    """Post/Redirect/Get: the outcome travels as a flash message."""
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def ip() -> str | None:
    return client_ip()
