"""The admins' view of answer feedback: filters, and the same rows as CSV."""

from __future__ import annotations

from flask import Response, render_template, request, stream_with_context

from qa.answering.feedback import RATINGS, FeedbackFilter
from qa.errors import InvalidInput
from qa.messages import N_
from web.auth import admin_required
from web.blueprints.admin import Page, bp
from web.extensions import services


def _filters() -> FeedbackFilter:
    rating = request.args.get("rating") or None
    username = (request.args.get("user") or "").strip() or None
    if username is not None and len(username) > 64:
        raise InvalidInput(N_("query parameter 'user' is too long"))
    return FeedbackFilter(
        rating=rating, username=username, with_comment=request.args.get("comment") == "1"
    )


@bp.get("/feedback")
@admin_required
def feedback() -> Page:
    svc = services()
    where = _filters()
    return render_template(
        "admin/feedback.html",
        rows=svc.feedback.list(where),
        counts=svc.feedback.counts(),
        where=where,
        ratings=RATINGS,
        users=svc.accounts.list_users(),
    )


@bp.get("/feedback.csv")
@admin_required
def feedback_csv() -> Response:
    rows = services().feedback.csv_rows(_filters())
    resp = Response(stream_with_context(rows), mimetype="text/csv")
    resp.headers["Content-Disposition"] = 'attachment; filename="docqa-feedback.csv"'
    return resp
