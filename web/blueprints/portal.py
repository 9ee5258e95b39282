"""The employee portal: the chat page and the document viewer.

Both pages are server-rendered shells; the behaviour lives in ES modules under
``static/js/portal`` that talk to ``/api/v1`` (the CSP forbids inline script and style).
The collection picker is rendered here too, so the page shows only what the user may read
even before the script runs.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from web.auth import current_preferences, current_principal, login_required
from web.extensions import services
from web.requests import arg_int

bp = Blueprint("portal", __name__)

#: offsets in a page's text; pages of real documents stay far below this
MAX_OFFSET = 10_000_000
MAX_PAGE = 1_000_000


@bp.get("/")
@login_required
def index() -> str:
    p = current_principal()
    svc = services()
    return render_template(
        "portal/chat.html",
        theme=_theme(),
        language_preference=_language_preference(),
        collections=svc.library.collections(p),
    )


@bp.get("/documents/<doc_id>/view")
@login_required
def view_document(doc_id: str) -> str:
    p = current_principal()
    doc = services().library.document(p, doc_id)  # NotFound for documents p may not read
    page = arg_int("page", 1, 1, MAX_PAGE)
    start = _optional_offset("start")
    end = _optional_offset("end")
    return render_template(
        "portal/viewer.html",
        theme=_theme(),
        doc=doc,
        page=page,
        start=start,
        end=end,
    )


@bp.get("/summaries")
@login_required
def summaries() -> str:
    """Summary jobs: submit, follow progress, cancel, read and download (summaries.js)."""
    from web.blueprints.api.summaries import summary_jobs

    p = current_principal()
    return render_template(
        "portal/summaries.html",
        theme=_theme(),
        jobs=summary_jobs().list(p),
        collections=services().library.collections(p),
        open_job=(request.args.get("job") or "")[:36],
    )


def _optional_offset(name: str) -> int | None:
    """A char offset from the query, or None when the link names no passage."""
    if request.args.get(name, "") == "":
        return None
    return arg_int(name, 0, 0, MAX_OFFSET)


def _theme() -> str:
    theme = current_preferences().get("theme")
    return theme if theme in ("dark", "light") else "dark"


def _language_preference() -> str:
    """The language the user chose in the settings; "" = the browser's."""
    language = current_preferences().get("language")
    return language if isinstance(language, str) else ""
