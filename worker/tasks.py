"""Ingest tasks of the scaled mode: each one calls one service function.

    docqa.ingest_document(doc_id)        queue ingest   IngestService.process, then asks
                                                        for a publish of its collection
    docqa.publish_collection(coll_id)    queue index    IngestService.publish (one writer:
                                                        run that queue with concurrency 1)
    docqa.reconcile()                    queue index    periodic (beat): re-enqueue documents
                                                        and summary jobs the broker lost or
                                                        a dead worker held, and reindex
                                                        requests (``worker.reconcile``);
                                                        every hour also ``docqa gc``'s sweep
    docqa.directory_sync()               queue index    periodic (beat) when a directory is
                                                        configured: disable accounts gone
                                                        from it, refresh groups
    docqa.folder_sync([source_id])       queue ingest   periodic (beat): scan the synced
                                                        folders that are due, or one now

Arguments are ids; everything else is read from the metadata DB, so a redelivered or
duplicated message finds the document as it is now (an ``indexed`` one is a no-op).

Retries: only transient failures (database or broker unreachable) are retried, with
exponential backoff. A bad file never raises here: ``process`` records it as ``failed``
with its reason. A file that kills the worker itself is counted by ``process`` (attempts)
and quarantined; Celery redelivers such a task (``reject_on_worker_lost``) until then.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from ingest.pipeline import IngestService
from qa.accounts.audit import AuditLog
from qa.accounts.directory_sync import sync_directory
from qa.accounts.sign_in import SignIn
from qa.accounts.users import AccountService
from qa.errors import NotFound
from qa.library.gc import GC_INTERVAL_S, collect_garbage, record_gc
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import Document
from worker import context
from worker.celery_app import ROUTES, app, app_settings
from worker.heartbeat import Heartbeats
from worker.per_process import PerProcess
from worker.reconcile import publish_due
from worker.reconcile import reconcile as reconcile_db

log = logging.getLogger(__name__)

INGEST_QUEUE = ROUTES["docqa.ingest_document"]
SUMMARIZE_TASK = "docqa.summarize"

#: retries of one task for transient failures: 5 s, 10 s, 20 s ... capped at 5 min
MAX_RETRIES = 10
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 300.0

_TRANSIENT: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # database down, connection dropped, lock timeout
    sqlalchemy.exc.InterfaceError,
    kombu.exceptions.OperationalError,  # broker unreachable while enqueueing
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """A failure of the infrastructure, not of the document (also when wrapped)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _TRANSIENT):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def backoff_s(retries: int) -> float:
    """Exponential, capped, with jitter so that workers do not retry in lockstep."""
    base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** int(retries))
    return base * random.uniform(0.8, 1.2)


def _retry_if_transient(task: Task, exc: Exception) -> None:
    if is_transient(exc):
        log.warning("%s: transient failure, will retry: %s", task.name, exc)
        raise task.retry(exc=exc, countdown=backoff_s(task.request.retries))


@app.task(name="docqa.ingest_document", bind=True, max_retries=MAX_RETRIES, ignore_result=True)  # type: ignore[untyped-decorator]
def ingest_document(self: Task, doc_id: str) -> dict[str, Any]:
    try:
        service = context.ingest_service()
        with service.db.session() as session:
            doc = session.get(Document, doc_id)
            if doc is None:
                return {"document_id": doc_id, "outcome": "deleted"}
            collection_id = doc.collection_id
        try:
            result = service.process(doc_id, worker=self.request.hostname)
        except SoftTimeLimitExceeded:
            # Too costly a document: record it (a retry would only hit the limit again).
            context.reset()
            soft = app.conf.task_soft_time_limit
            result = context.ingest_service().mark_failed(
                doc_id,
                N_(
                    "processing took longer than %(seconds)s s (the ingest task time limit)",
                    seconds=soft,
                ),
                "time_limit",
            )
        publish_collection.apply_async(args=[collection_id])
    except NotFound:  # deleted while it was being processed
        return {"document_id": doc_id, "outcome": "deleted"}
    except SoftTimeLimitExceeded:
        # Out of time outside ``process`` (loading the model, say): the document is left
        # as it is, for the reconciler.
        context.reset()
        raise
    except Exception as exc:
        _retry_if_transient(self, exc)
        raise
    log.info(
        "document %s (%s): %s%s",
        doc_id,
        result.name,
        result.outcome,
        f" ({result.reason})" if result.reason else f", {result.chunks} chunks",
    )
    return {"document_id": doc_id, "outcome": result.outcome, "chunks": result.chunks}


@app.task(name="docqa.publish_collection", bind=True, max_retries=MAX_RETRIES, ignore_result=True)  # type: ignore[untyped-decorator]
def publish_collection(self: Task, collection_id: int, force: bool = False) -> dict[str, Any]:
    """Republish a collection's indexes; without ``force``, coalesced (see ``publish_due``)."""
    try:
        service = context.ingest_service()
        if not force and not publish_due(service.db, service.indexes, collection_id):
            return {"collection_id": collection_id, "published": None}
        published = service.publish(collection_id)
    except NotFound:  # the collection was deleted meanwhile
        return {"collection_id": collection_id, "published": None}
    except Exception as exc:
        _retry_if_transient(self, exc)
        raise
    log.info(
        "collection %s: published %s (%d chunks)", collection_id, published.version, published.count
    )
    return {
        "collection_id": collection_id,
        "published": published.version,
        "count": published.count,
    }


@app.task(name="docqa.reconcile", ignore_result=True)  # type: ignore[untyped-decorator]
def reconcile(startup: bool = False) -> dict[str, object]:
    """Re-enqueue stuck documents, lost publishes and reindex requests (beat runs this
    periodically; the index worker once when it starts, with ``startup``)."""
    service = context.ingest_service()
    report = reconcile_db(
        service.db,
        service.indexes,
        service.settings,
        enqueue_document=lambda doc_id: ingest_document.apply_async(args=[doc_id]),
        enqueue_publish=lambda cid: publish_collection.apply_async(args=[cid]),
        backlog=queue_backlog(INGEST_QUEUE),
        # by name: the summarize task module loads what only summarize workers need
        enqueue_summary=lambda job_id: app.send_task(SUMMARIZE_TASK, args=[job_id]),
        summary_backlog=queue_backlog(ROUTES[SUMMARIZE_TASK]),
        alive=_heartbeats.get().alive,
        enqueue_reindex=lambda cid: publish_collection.apply_async(
            args=[cid], kwargs={"force": True}
        ),
        startup=startup,
    )
    return {**report.to_dict(), "gc": sweep_if_due(service)}


def _build_heartbeats() -> Heartbeats:
    settings = app_settings()
    assert settings.broker_url is not None  # a Celery worker has a broker
    return Heartbeats.from_url(settings.broker_url, settings.worker_heartbeat_ttl_s)


#: this pool process's reader of the worker heartbeats (the reconciler's)
_heartbeats: PerProcess[Heartbeats] = PerProcess(_build_heartbeats, Heartbeats.close)


#: when this process last swept (beat sends reconcile to the one index worker)
_last_sweep: float | None = None


def sweep_if_due(service: IngestService) -> dict[str, object] | None:
    """Run ``docqa gc``'s sweep every ``GC_INTERVAL_S``; audit it when it freed something."""
    global _last_sweep
    now = time.monotonic()
    if _last_sweep is not None and now - _last_sweep < GC_INTERVAL_S:
        return None
    _last_sweep = now
    report = collect_garbage(
        service.db, service.blobs, service.indexes, service.settings.data_dir / "uploads"
    )
    if report.freed_anything:
        record_gc(AuditLog(service.db), report, run_by="reconciler")
    return report.to_dict()


@app.task(name="docqa.directory_sync", ignore_result=True)  # type: ignore[untyped-decorator]
def directory_sync() -> dict[str, object]:
    """One directory re-sync (beat runs it every ``DOCQA_LDAP_SYNC_MINUTES``). A directory
    that cannot answer fails this run only; nobody is disabled for it."""
    settings = app_settings()
    db = Database(settings.db_url)  # every 15 minutes: not worth a pooled engine
    try:
        sign_in = SignIn.from_settings(settings, AccountService(db), AuditLog(db))
        return sync_directory(sign_in).as_dict()
    finally:
        db.dispose()


@app.task(name="docqa.folder_sync", ignore_result=True)  # type: ignore[untyped-decorator]
def folder_sync(source_id: int | None = None) -> dict[str, object]:
    """Scan the synced folders whose interval has passed (beat, every
    ``DOCQA_SYNC_CHECK_S``), or one folder now (the console's "scan now"). What a scan
    stores goes out as ``docqa.ingest_document`` tasks; a folder another worker is scanning
    is left to it (``ingest.folder_sync``)."""
    from ingest.folder_sync import FolderSync, run_due, scan_and_queue
    from worker.celery_queue import CeleryIngestQueue

    settings = app_settings()
    service = context.ingest_service()
    sync = FolderSync(
        service, settle_s=settings.sync_settle_s, files_per_s=settings.sync_files_per_s
    )
    queue = CeleryIngestQueue(service, app)
    if source_id is not None:
        return {"scanned": int(scan_and_queue(sync, queue, source_id) is not None)}
    return {"scanned": run_due(sync, queue)}


def queue_backlog(queue: str) -> int | None:
    """Messages waiting in a queue (None when the broker cannot tell)."""
    try:
        with app.connection_for_read() as conn:
            try:
                declared = conn.default_channel.queue_declare(queue=queue, passive=True)
            except conn.channel_errors:
                return 0  # no such queue: Redis deletes a list once it is empty
            return int(declared.message_count)
    except Exception:  # the reconciler must run even when the broker cannot answer this
        log.warning("cannot read the length of the %s queue", queue, exc_info=True)
        return None
