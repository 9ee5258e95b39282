"""Summary jobs: rows of the jobs table that the web app submits and a worker runs.

    queued ──run──> running ──> done | failed | cancelled
      │                │
      └──cancel──> cancelled      running + cancel: ``cancel_requested`` is set; the job
                                  sees it between windows (and between tokens) and ends
                                  as cancelled

The web process never runs the model for a summary: it inserts the row and hands the id to
the ``IngestQueue`` (a thread in the embedded mode, the ``summarize`` Celery queue when a
broker is configured). Whatever runs it calls ``SummaryRunner.run(job_id)``, which is safe
to call again for the same job (a redelivered task restarts a job its dead worker left
running; a finished or cancelled job is left alone).

Who may do what (decided and enforced here, the same for API, portal, console):

* summarize a document: anyone who may read it, readers included. The summary says
  nothing its reader could not read, and it runs at batch priority, so it never delays
  anyone's question;
* summarize a collection: admins and editors who may read it (one model run per
  document is a cost worth a role);
* see, cancel, download a job: the user who submitted it, for as long as they may still
  read what it summarizes; admins may see and cancel every job;
* at most ``max_active`` jobs queued or running per user (409 beyond).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from qa.accounts.access import AccessService
from qa.accounts.audit import SUMMARIZE, SUMMARY_CANCEL, AuditLog
from qa.accounts.users import Principal
from qa.errors import (
    Cancelled,
    Conflict,
    DocqaError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from qa.library.ingest_queue import IngestQueue
from qa.messages import N_
from qa.reasons import public_reason
from qa.store import catalog
from qa.store.db.engine import Database
from qa.store.db.models import DocStatus, Job, iso_utc
from qa.store.jobs import change_job, count_jobs, job_ids, job_state, list_jobs
from qa.summaries.control import JobControl
from qa.summaries.options import SummaryOptions
from qa.summaries.service import SummaryService

log = logging.getLogger(__name__)

KIND = "summary"
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
DOCUMENT, COLLECTION = "document", "collection"
MAX_LIST = 200


@dataclass(frozen=True)
class SummaryJobView:
    """A summary job as its submitter (or an admin) sees it in a listing."""

    id: str
    target: str | None
    name: str | None
    document_id: str | None
    collection_id: int | None
    status: str
    progress: float
    error: str | None
    cancel_requested: bool
    submitted_by: str | None
    options: dict[str, Any]
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, job: Job) -> SummaryJobView:
        return cls(**_view_fields(job))


@dataclass(frozen=True)
class SummaryJobDetail(SummaryJobView):
    """One job, read on its own: with the finished summary (None until it is done)."""

    result: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: Job) -> SummaryJobDetail:
        result = (job.payload or {}).get("result") if job.status == DONE else None
        return cls(**_view_fields(job), result=result)


def _view_fields(job: Job) -> dict[str, Any]:
    payload = job.payload or {}
    return {
        "id": job.id,
        "target": payload.get("target"),
        "name": payload.get("name"),
        "document_id": job.document_id,
        "collection_id": job.collection_id,
        "status": job.status,
        "progress": round(float(job.progress or 0.0), 4),
        "error": job.error,
        "cancel_requested": bool(job.cancel_requested),
        "submitted_by": payload.get("submitted_by"),
        "options": payload.get("options", {}),
        "created_at": iso_utc(job.created_at),
        "updated_at": iso_utc(job.updated_at),
    }


@dataclass(frozen=True)
class Download:
    filename: str
    content: str
    mimetype: str


def download_name(name: str, extension: str) -> str:
    """A safe file name from a document or collection name (the header adds a UTF-8 form)."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", name)
    stem = re.sub(r"[^\w.-]+", "-", stem, flags=re.UNICODE).strip("-.") or "summary"
    return f"summary-{stem[:80]}.{extension}"


class SummaryJobs:
    """The submitting side: checks access, writes rows, enqueues, reads results."""

    def __init__(
        self,
        db: Database,
        access: AccessService,
        audit: AuditLog,
        queue: IngestQueue | None,
        *,
        max_active: int = 3,
    ) -> None:
        self.db = db
        self.access = access
        self.audit = audit
        self.queue = queue
        self.max_active = max_active

    # -- submitting -----------------------------------------------------------------------

    def submit(
        self,
        p: Principal,
        *,
        document_id: str | None = None,
        collection_id: int | None = None,
        max_statements: int | None = None,
        ip: str | None = None,
    ) -> SummaryJobDetail:
        if (document_id is None) == (collection_id is None):
            raise InvalidInput(N_("give exactly one of document_id and collection_id"))
        options = SummaryOptions(
            **({"max_statements": max_statements} if max_statements is not None else {})
        )
        options.validate()
        if document_id is not None:
            target = DOCUMENT
            name, coll_id = self._readable_document(p, document_id)
        else:
            assert collection_id is not None
            target, coll_id = COLLECTION, collection_id
            name = self._summarizable_collection(p, collection_id)
        job = Job(
            id=uuid.uuid4().hex,
            kind=KIND,
            status=QUEUED,
            collection_id=coll_id,
            document_id=document_id,
            user_id=p.user_id,
            payload={
                "target": target,
                "name": name,
                "options": options.to_dict(),
                "submitted_by": p.username,
                "result": None,
            },
            progress=0.0,
        )
        with self.db.session() as session:
            active = count_jobs(session, KIND, p.user_id, ACTIVE)
            if active >= self.max_active:
                raise Conflict(
                    N_(
                        "you have %(active)s summaries queued or running; wait for one to"
                        " finish or cancel one",
                        active=active,
                    )
                )
            session.add(job)
            session.commit()
        details = {"job_id": job.id, "target": target, "id": document_id or collection_id}
        self.audit.record(SUMMARIZE, actor=p, target=name, details=details, ip=ip)
        self._enqueue(job.id)
        return self.get(p, job.id)

    def _enqueue(self, job_id: str) -> None:
        try:
            if self.queue is None:
                raise Unavailable(N_("no background worker is configured for summaries"))
            self.queue.summarize(job_id)
        except DocqaError as exc:
            # Nothing would ever run the job: it fails now, with the reason, and the caller
            # is told to submit again (rather than being promised a run that never comes).
            self._finish_unqueued(job_id, f"could not be queued: {exc}")
            retry = getattr(exc, "retry_after_s", 30)
            raise Unavailable(
                N_(
                    "the summary could not be queued (%(error)s); submit it again later",
                    error=exc.message,
                ),
                retry_after_s=retry if isinstance(retry, int) else 30,
            ) from exc

    def _finish_unqueued(self, job_id: str, reason: str) -> None:
        with self.db.session() as session:
            change_job(session, job_id, [QUEUED], status=FAILED, error=public_reason(reason))
            session.commit()

    def _readable_document(self, p: Principal, document_id: str) -> tuple[str, int]:
        if len(document_id) > 64:
            raise NotFound(N_("no document %(id)s", id=repr(document_id[:64])))
        with self.db.session() as session:
            doc = catalog.get_document(session, document_id)
            name, status, coll_id = doc.original_name, doc.status, doc.collection_id
        try:
            self.access.require_read(p, coll_id)
        except NotFound:
            raise NotFound(N_("no document %(id)s", id=repr(document_id))) from None
        if status != DocStatus.INDEXED:
            raise InvalidInput(
                N_(
                    "%(name)s is %(status)s, not indexed: it cannot be summarized yet",
                    name=name,
                    status=status,
                )
            )
        return name, coll_id

    def _summarizable_collection(self, p: Principal, collection_id: int) -> str:
        self.access.require_read(p, collection_id)
        if not p.can_manage_collections:
            raise PermissionDenied(
                N_(
                    "only admins and editors summarize whole collections; readers may"
                    " summarize single documents"
                )
            )
        with self.db.session() as session:
            name = catalog.get_collection_by_id(session, collection_id).name
            indexed = catalog.document_count(session, collection_id, DocStatus.INDEXED)
        if not indexed:
            raise InvalidInput(N_("collection %(name)s has no indexed documents", name=repr(name)))
        return name

    # -- reading ----------------------------------------------------------------------------

    def list(self, p: Principal, *, limit: int = 50) -> list[SummaryJobView]:
        """The caller's own jobs, newest first, only those whose target they may still read
        (without their results)."""
        readable = set(self.access.readable_collection_ids(p))
        with self.db.session() as session:
            jobs = list_jobs(session, KIND, p.user_id, min(max(limit, 1), MAX_LIST))
        return [SummaryJobView.of(j) for j in jobs if j.collection_id in readable]

    def _visible(self, p: Principal, job_id: str) -> Job:
        with self.db.session() as session:
            job = session.get(Job, job_id) if len(job_id) <= 36 else None
        absent = NotFound(N_("no summary job %(id)s", id=repr(job_id[:36])))
        if job is None or job.kind != KIND or job.collection_id is None:
            raise absent
        if not p.is_admin and job.user_id != p.user_id:
            raise absent
        try:
            self.access.require_read(p, job.collection_id)
        except NotFound:
            raise absent from None
        return job

    def get(self, p: Principal, job_id: str) -> SummaryJobDetail:
        return SummaryJobDetail.of(self._visible(p, job_id))

    def download(self, p: Principal, job_id: str, fmt: str) -> Download:
        """The finished summary as Markdown (``md``) or JSON (``json``)."""
        import json

        job = self._visible(p, job_id)
        if job.status != DONE:
            raise Conflict(
                N_(
                    "the summary is %(status)s, not done: nothing to download yet",
                    status=job.status,
                )
            )
        result = (job.payload or {}).get("result") or {}
        name = (job.payload or {}).get("name") or "summary"
        if fmt == "md":
            return Download(download_name(name, "md"), result.get("markdown", ""), "text/markdown")
        if fmt == "json":
            body = json.dumps(result, ensure_ascii=False, indent=2)
            return Download(download_name(name, "json"), body + "\n", "application/json")
        raise InvalidInput(N_("unknown format %(format)s; md or json", format=repr(fmt)))

    # -- cancelling -------------------------------------------------------------------------

    def cancel(self, p: Principal, job_id: str, *, ip: str | None = None) -> SummaryJobDetail:
        """Stop a job: a queued one at once, a running one at its next check (seconds).

        Two single-statement UPDATEs, each conditional on the status: whichever of the
        runner and the canceller gets there first wins, and neither overwrites the other.
        """
        job = self._visible(p, job_id)
        with self.db.session() as session:
            change_job(
                session, job.id, [QUEUED], status=CANCELLED, error=f"cancelled by {p.username}"
            )
            change_job(session, job.id, [RUNNING], cancel_requested=True)
            session.commit()
        if job.status in ACTIVE:
            details = {"job_id": job.id, "was": job.status}
            name = (job.payload or {}).get("name")
            self.audit.record(SUMMARY_CANCEL, actor=p, target=name, details=details, ip=ip)
        return self.get(p, job_id)


# -- the running side ---------------------------------------------------------------------------


class _DbControl(JobControl):
    """Progress into the row; a cancel request (or the process stopping) into ``cancel``."""

    def __init__(
        self, db: Database, job_id: str, stop: threading.Event | None, interval_s: float
    ) -> None:
        super().__init__()
        self.db = db
        self.job_id = job_id
        self.stop = stop
        self.interval_s = interval_s
        self._last_poll = 0.0
        self._last_progress = 0.0
        self.requested = False

    def progress(self, fraction: float) -> None:
        if fraction < self._last_progress + 0.001 and fraction < 1.0:
            return
        self._last_progress = fraction
        try:
            with self.db.session() as session:
                change_job(session, self.job_id, [RUNNING], progress=round(min(fraction, 1.0), 4))
                session.commit()
        except SQLAlchemyError as exc:  # progress is a courtesy: never fail the job for it
            log.warning("could not record progress of summary %s: %s", self.job_id, exc)

    def poll(self) -> None:
        if self.stop is not None and self.stop.is_set():
            self.cancel.set()
        now = time.monotonic()
        if self.cancel.is_set() or now - self._last_poll < self.interval_s:
            return
        self._last_poll = now
        try:
            with self.db.session() as session:
                row = job_state(session, self.job_id)
        except SQLAlchemyError as exc:
            log.warning("could not check summary %s for a cancel: %s", self.job_id, exc)
            return
        # Gone (its document or owner deleted) or no longer ours: stop as well.
        if row is None or row[1] or row[0] != RUNNING:
            self.requested = True
            self.cancel.set()


class SummaryRunner:
    """Runs one job to its end; every path leaves the row in a final state (or queued
    again when the process is stopping, so the next start resumes it)."""

    def __init__(self, db: Database, service: SummaryService, *, poll_s: float = 0.5) -> None:
        self.db = db
        self.service = service
        self.poll_s = poll_s

    def pending(self) -> list[str]:
        """Jobs an earlier process accepted but did not finish, oldest first."""
        with self.db.session() as session:
            return job_ids(session, KIND, ACTIVE)

    def run(self, job_id: str, *, stop: threading.Event | None = None) -> str:
        """Run the job; returns its status afterwards (or "skipped" if not ours to run)."""
        job = self._claim(job_id)
        if job is None:
            return "skipped"
        control = _DbControl(self.db, job_id, stop, self.poll_s)
        if job.cancel_requested:
            return self._finish(job, CANCELLED, error="cancelled")
        payload = job.payload or {}
        try:
            options = SummaryOptions.from_dict(payload.get("options"))
            if payload.get("target") == COLLECTION and job.collection_id is not None:
                result = self.service.summarize_collection(
                    job.collection_id, control=control, options=options
                )
            elif job.document_id is not None:
                result = self.service.summarize_document(
                    job.document_id, control=control, options=options
                )
            else:
                return self._finish(job, FAILED, error="the job names nothing to summarize")
        except Cancelled:
            if stop is not None and stop.is_set() and not control.requested:
                return self._requeue(job)
            return self._finish(job, CANCELLED, error="cancelled")
        except DocqaError as exc:
            return self._finish(job, FAILED, error=str(exc))
        except Exception as exc:  # the row must not stay "running" whatever happened
            log.exception("summary job %s crashed", job_id)
            return self._finish(job, FAILED, error=_reason(exc))
        return self._finish(job, DONE, result=result)

    def _claim(self, job_id: str) -> Job | None:
        with self.db.session() as session:
            claimed = change_job(
                session, job_id, ACTIVE, kind=KIND, status=RUNNING, progress=0.0, error=None
            )
            session.commit()
            return session.get(Job, job_id) if claimed else None

    def _finish(
        self,
        job: Job,
        status: str,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> str:
        values: dict[str, Any] = {
            "status": status,
            "error": None if error is None else public_reason(error),
        }
        if result is not None:
            # Only the runner writes the payload while a job runs: no update is lost.
            values["payload"] = {**(job.payload or {}), "result": result}
            values["progress"] = 1.0
        with self.db.session() as session:
            change_job(session, job.id, [RUNNING], **values)
            session.commit()
        return status

    def _requeue(self, job: Job) -> str:
        with self.db.session() as session:
            change_job(session, job.id, [RUNNING], status=QUEUED, progress=0.0)
            session.commit()
        return QUEUED


def _reason(exc: Exception) -> str:
    if "TimeLimit" in type(exc).__name__:  # Celery's soft time limit
        return "stopped: the summary ran past its time limit"
    return f"internal error ({type(exc).__name__}); see the worker log"
