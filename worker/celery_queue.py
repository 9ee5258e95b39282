"""The scaled mode's ingest queue: uploads stored here, processed by Celery workers.

``docqa serve`` with a broker configured hands uploads to this queue. ``submit`` stores the
bytes and registers ``queued`` rows exactly as the embedded queue does, then sends one
``docqa.ingest_document`` message per document (by task name: the web process imports no
task code). If the broker cannot be reached, the rows stay ``queued``, the reconciler sends
them once it is back, and the caller gets ``Unavailable`` (503): the upload is kept, only
its processing waits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import IO, Any

import kombu.exceptions
import redis.exceptions
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ingest.pipeline import IngestService
from qa.errors import Unavailable
from qa.library.ingest_queue import IngestQueue, Upload
from qa.store.catalog import request_reindex
from qa.store.db.models import DocStatus, Document, utcnow
from worker.heartbeat import Heartbeats
from worker.reconcile import documents_to_resend, mark_queued
from worker.uploads import store_upload

log = logging.getLogger(__name__)

#: what a failed enqueue looks like (kombu wraps most, not all, transport errors)
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

#: a few quick retries for a blip; a broker that is down must not hold a request for long
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.5, "interval_max": 1.0}

STORED_MESSAGE = (
    "the task queue is unreachable; the upload is stored and will be processed when it is back"
)


class CeleryIngestQueue(IngestQueue):
    def __init__(self, service: IngestService, app: Celery) -> None:
        self.service = service
        self.app = app
        self._spool = service.settings.data_dir / "uploads"
        # Asked at /readyz and scrape time: a Redis that does not answer must not hold them.
        self._heartbeats = Heartbeats.from_url(
            service.settings.broker_url or str(app.conf.broker_url),
            service.settings.worker_heartbeat_ttl_s,
            timeout_s=1.0,
        )

    def submit(self, collection: str, stream: IO[bytes], name: str) -> list[Upload]:
        uploads, pending = store_upload(self.service, collection, stream, name, self._spool)
        self._send_all("docqa.ingest_document", [doc_id for doc_id, _ in pending], STORED_MESSAGE)
        return uploads

    def retry(self, document_ids: Sequence[str]) -> None:
        mark_queued(self.service.db, document_ids)
        self._send_all(
            "docqa.ingest_document",
            list(document_ids),
            "the task queue is unreachable; the documents are queued and will be processed"
            " when it is back",
        )

    def reindex(self, collection_id: int) -> None:
        # The row carries the request: a message lost with the broker, or with an index
        # worker killed while it held it, is sent again by the reconciler.
        with self.service.db.session() as session:
            request_reindex(session, collection_id)
            session.commit()
        self._send(
            "docqa.publish_collection",
            [collection_id],
            {"force": True},
            "the task queue is unreachable; the reindex is recorded and will run when it is back",
        )

    def sync_now(self, source_id: int) -> None:
        self._send(
            "docqa.folder_sync",
            [source_id],
            None,
            "the task queue is unreachable; the folder will be scanned at its next interval",
        )

    def summarize(self, job_id: str) -> None:
        self._send(
            "docqa.summarize",
            [job_id],
            None,
            "the task queue is unreachable; the job is stored and will run when it is back",
        )

    def depth(self) -> int:
        """Documents queued or processing, as the DB says (the broker is not asked)."""
        try:
            with self.service.db.session() as session:
                count = session.scalar(
                    select(func.count())
                    .select_from(Document)
                    .where(Document.status.in_((DocStatus.QUEUED, DocStatus.PROCESSING)))
                )
        except SQLAlchemyError:
            return -1
        return int(count or 0)

    def stuck_processing(self) -> int:
        """``processing`` documents of a worker whose heartbeat expired, or past the
        processing deadline: what the reconciler will send again on its next run."""
        try:
            return len(
                documents_to_resend(
                    self.service.db,
                    self.service.settings,
                    self._heartbeats.alive,
                    queued_before=None,
                    now=utcnow(),
                )
            )
        except SQLAlchemyError:
            return -1

    def close(self) -> None:
        self._heartbeats.close()
        self.service.close()

    # -- internals ------------------------------------------------------------------------

    def _send_all(self, task: str, ids: list[str], message: str) -> None:
        for i, doc_id in enumerate(ids):
            try:
                self._publish(task, [doc_id], None)
            except BROKER_ERRORS as exc:
                # The rows are already durable; the reconciler sends the rest later.
                log.warning("enqueue of %s failed after %d of %d: %s", task, i, len(ids), exc)
                raise Unavailable(message) from exc

    def _send(
        self, task: str, args: list[Any], kwargs: dict[str, Any] | None, message: str
    ) -> None:
        try:
            self._publish(task, args, kwargs)
        except BROKER_ERRORS as exc:
            log.warning("enqueue of %s%r failed: %s", task, args, exc)
            raise Unavailable(message) from exc

    def _publish(self, task: str, args: list[Any], kwargs: dict[str, Any] | None) -> None:
        # No result: nobody reads one (the DB has the outcome), and asking for one would
        # make Celery subscribe to the result store first, which retries for 20 s when
        # Redis is down before raising something that is not a broker error.
        self.app.send_task(
            task,
            args=args,
            kwargs=kwargs,
            ignore_result=True,
            retry=True,
            retry_policy=PUBLISH_RETRY,
        )
