"""``/api/v1/summaries``: summary jobs of one document or a whole collection.

POST /summaries                 {document_id | collection_id, max_statements?} -> 202 {"job"}
GET  /summaries                 -> {"jobs": [job]}  (the caller's own, newest first)
GET  /summaries/<id>            -> {"job": job + result (when done)}
POST /summaries/<id>/cancel     -> {"job": job}
GET  /summaries/<id>.md|.json   -> the finished summary as a file (attachment)

The route only records the job and hands it to the ingest queue (a background thread, or
the ``summarize`` Celery queue); the model never runs inside a request. Who may summarize
and see what is decided in ``qa.summaries.jobs``.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, jsonify

from qa.limits import MAX_SUMMARY_STATEMENTS
from qa.summaries.jobs import Download, SummaryJobs
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.extensions import services
from web.requests import arg_int, client_ip, field_int, field_str, json_body


def summary_jobs() -> SummaryJobs:
    """The jobs service over this app's services (cheap: it only holds references)."""
    svc = services()
    return SummaryJobs(svc.db, svc.access, svc.audit, svc.ingest)


def attachment(download: Download) -> Response:
    resp = Response(download.content, mimetype=download.mimetype)
    ascii_name = download.filename.encode("ascii", "replace").decode().replace("?", "_")
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(download.filename)}"
    )
    return resp


@bp.post("/summaries")
@login_required
def submit_summary() -> tuple[Response, int]:
    p = current_principal()
    svc = services()
    data = json_body()
    document_id = field_str(data, "document_id", required=False, max_len=64)
    collection_id = field_int(data, "collection_id", lo=1, hi=2**31 - 1)
    max_statements = field_int(data, "max_statements", lo=1, hi=MAX_SUMMARY_STATEMENTS)
    # A summary costs model time: it counts against the same budget as questions.
    svc.limiter.hit("question", f"user:{p.user_id}", svc.settings.rate_questions_per_min)
    job = summary_jobs().submit(
        p,
        document_id=document_id,
        collection_id=collection_id,
        max_statements=max_statements,
        ip=client_ip(),
    )
    return jsonify({"job": job}), 202


@bp.get("/summaries")
@login_required
def list_summaries() -> Response:
    jobs = summary_jobs().list(current_principal(), limit=arg_int("limit", 50, 1, 200))
    return jsonify({"jobs": jobs})


@bp.get("/summaries/<job_id>")
@login_required
def get_summary(job_id: str) -> Response:
    return jsonify({"job": summary_jobs().get(current_principal(), job_id)})


@bp.post("/summaries/<job_id>/cancel")
@login_required
def cancel_summary(job_id: str) -> Response:
    job = summary_jobs().cancel(current_principal(), job_id, ip=client_ip())
    return jsonify({"job": job})


@bp.get("/summaries/<job_id>.md")
@login_required
def summary_markdown(job_id: str) -> Response:
    return attachment(summary_jobs().download(current_principal(), job_id, "md"))


@bp.get("/summaries/<job_id>.json")
@login_required
def summary_json(job_id: str) -> Response:
    return attachment(summary_jobs().download(current_principal(), job_id, "json"))
