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

from flask import Response

from qa.summaries.jobs import Download, SummaryJobs
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.contracts.api import JobEnvelope, JobList, SummaryQuery, SummaryRequest, SummaryResult
from web.contracts.operation import Reply, operation
from web.extensions import services
from web.requests import client_ip

TAG = "summaries"
DOWNLOAD_HEADERS = {"Content-Disposition": "attachment; filename=..."}
SUBMIT_DESCRIPTION = (
    "Anyone who may read a document may summarize it; whole collections need the admin or "
    "editor role. 409: the caller already has the maximum of jobs queued or running. The "
    "model runs at batch priority: questions go first."
)


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
@operation(
    "Summarize a document or a collection in the background",
    TAG,
    {202: Reply(JobEnvelope, "Queued")},
    errors=(400, 403, 404, 409, 413, 503),
    body=SummaryRequest,
    description=SUBMIT_DESCRIPTION,
)
def submit_summary(body: SummaryRequest) -> Response:
    p = current_principal()
    svc = services()
    # A summary costs model time: it counts against the same budget as questions.
    svc.limiter.hit("question", f"user:{p.user_id}", svc.settings.rate_questions_per_min)
    job = summary_jobs().submit(
        p,
        document_id=body.document_id,
        collection_id=body.collection_id,
        max_statements=body.max_statements,
        ip=client_ip(),
    )
    return JobEnvelope.of(job).reply(202)


@bp.get("/summaries")
@login_required
@operation(
    "The caller's summary jobs, newest first",
    TAG,
    {200: JobList},
    errors=(400,),
    query=SummaryQuery,
)
def list_summaries(query: SummaryQuery) -> Response:
    return JobList.of(summary_jobs().list(current_principal(), limit=query.limit)).reply()


@bp.get("/summaries/<job_id>")
@login_required
@operation(
    "A summary job: status, progress and, when done, the result",
    TAG,
    {200: JobEnvelope},
    errors=(404,),
)
def get_summary(job_id: str) -> Response:
    return JobEnvelope.of(summary_jobs().get(current_principal(), job_id)).reply()


@bp.post("/summaries/<job_id>/cancel")
@login_required
@operation(
    "Cancel a job: a queued one at once, a running one within seconds",
    TAG,
    {200: JobEnvelope},
    errors=(404,),
)
def cancel_summary(job_id: str) -> Response:
    return JobEnvelope.of(
        summary_jobs().cancel(current_principal(), job_id, ip=client_ip())
    ).reply()


@bp.get("/summaries/<job_id>.md")
@login_required
@operation(
    "The finished summary as Markdown",
    TAG,
    {
        200: Reply(
            description="the finished summary as an attachment",
            media={"text/markdown": None},
            headers=DOWNLOAD_HEADERS,
        )
    },
    errors=(404, 409),
)
def summary_markdown(job_id: str) -> Response:
    return attachment(summary_jobs().download(current_principal(), job_id, "md"))


@bp.get("/summaries/<job_id>.json")
@login_required
@operation(
    "The finished summary as JSON",
    TAG,
    {200: Reply(SummaryResult, "the finished summary as an attachment", headers=DOWNLOAD_HEADERS)},
    errors=(404, 409),
)
def summary_json(job_id: str) -> Response:
    return attachment(summary_jobs().download(current_principal(), job_id, "json"))
