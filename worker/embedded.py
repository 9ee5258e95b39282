"""The embedded ingest queue: uploads processed by a thread pool inside ``docqa serve``.

This is the single-machine default (no broker). An upload is stored in the blob store and
registered ``queued`` before ``submit`` returns; processing happens on a worker thread, and
a collection's indexes are republished once its last queued document is done, so a batch
of uploads costs one publish rather than one per file. Documents still ``queued`` or
``processing`` when the process stopped are picked up again by ``start()``: an accepted
upload is never lost, only delayed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import timedelta
from typing import IO

from sqlalchemy.exc import SQLAlchemyError

from ingest.folder_sync import FolderSync, FolderSyncLoop, scan_and_queue
from ingest.pipeline import IngestService
from qa.errors import NotFound
from qa.library.ingest_queue import IngestQueue, Upload
from qa.store.db.models import Document, utcnow
from qa.summaries.service import SummaryService
from worker.embedded_summaries import EmbeddedSummaries
from worker.reconcile import processing_deadline_s, stuck_documents
from worker.uploads import store_upload

log = logging.getLogger(__name__)


class EmbeddedIngestQueue(IngestQueue):
    def __init__(self, service: IngestService, *, workers: int = 1) -> None:
        self.service = service
        # One worker by default: parsing and embedding already use every core, and one
        # sandboxed parser child serves the whole queue.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self._lock = threading.Lock()
        self._waiting: Counter[int] = Counter()  # per collection: documents not done yet
        self._inflight = 0
        self._closed = False
        self._tmp = service.settings.data_dir / "uploads"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Summary jobs run on their own thread, not an ingest one (see embedded_summaries).
        self.summaries = EmbeddedSummaries(service.db, service.embedder)
        self.folder_sync: FolderSync | None = None
        self._sync_loop: FolderSyncLoop | None = None

    def start(self) -> int:
        """Re-queue documents an earlier run accepted but did not finish, and start
        scanning synced folders."""
        if self._sync_loop is None:
            self._start_folder_sync()
        pending = self.service.pending()
        for doc_id in pending:
            self._schedule_document(doc_id, self._collection_of(doc_id))
        if pending:
            log.info("re-queued %d documents left unfinished by an earlier run", len(pending))
        return len(pending)

    # -- IngestQueue ----------------------------------------------------------------------

    def submit(self, collection: str, stream: IO[bytes], name: str) -> list[Upload]:
        uploads, pending = store_upload(self.service, collection, stream, name, self._tmp)
        for doc_id, collection_id in pending:
            self._schedule_document(doc_id, collection_id)
        return uploads

    def retry(self, document_ids: Sequence[str]) -> None:
        for doc_id in document_ids:
            self._schedule_document(doc_id, self._collection_of(doc_id))

    def reindex(self, collection_id: int) -> None:
        with self._lock:
            if self._waiting[collection_id]:
                return  # the last document of the running batch publishes anyway
        self._run(self._publish, collection_id)

    def _start_folder_sync(self) -> None:
        """Synced folders are scanned in this process too: due ones every
        ``sync_check_s`` seconds, and one now when asked (``sync_now``), on a thread of
        their own so a long scan never holds up an upload."""
        settings = self.service.settings
        self.folder_sync = FolderSync(
            self.service, settle_s=settings.sync_settle_s, files_per_s=settings.sync_files_per_s
        )
        self._sync_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="folder-sync")
        self._sync_loop = FolderSyncLoop(self.folder_sync, self, settings.sync_check_s).start()

    def sync_now(self, source_id: int) -> None:
        if self.folder_sync is None:
            super().sync_now(source_id)
            return
        self._sync_pool.submit(scan_and_queue, self.folder_sync, self, source_id)

    def summarize(self, job_id: str) -> None:
        self.summaries.submit(job_id)

    def attach_summaries(self, summaries: SummaryService) -> None:
        """Run summary jobs with this service: the answer service's model and slot."""
        self.summaries.attach(summaries)

    def depth(self) -> int:
        with self._lock:
            return self._inflight

    def stuck_processing(self) -> int:
        """``processing`` past the deadline a worker's task would have (this process
        resumes what an earlier run left at ``start``, so this stays 0 unless a parse hangs
        beyond its own limits)."""
        settings = self.service.settings
        before = utcnow() - timedelta(seconds=processing_deadline_s(settings))
        try:
            return len(
                stuck_documents(self.service.db, queued_before=None, processing_before=before)
            )
        except SQLAlchemyError:
            return -1

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # Queued work is dropped, not lost: its documents stay ``queued`` in the DB and the
        # next start picks them up.
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._sync_loop is not None:
            self._sync_loop.stop()
            self._sync_pool.shutdown(wait=False, cancel_futures=True)
        self.summaries.close()
        self.service.close()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is queued or running (tests, and a clean shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth() == 0:
                return True
            time.sleep(0.05)
        return False

    # -- internals ------------------------------------------------------------------------

    def _collection_of(self, doc_id: str) -> int:
        with self.service.db.session() as session:
            doc = session.get(Document, doc_id)
            if doc is None:
                raise NotFound(f"no document {doc_id!r}")
            return doc.collection_id

    def _schedule_document(self, doc_id: str, collection_id: int) -> None:
        with self._lock:
            self._waiting[collection_id] += 1
        self._run(self._process, doc_id, collection_id)

    def _run(self, fn: Callable[..., None], *args: object) -> None:
        with self._lock:
            if self._closed:
                return
            self._inflight += 1
        self._pool.submit(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # a worker thread must survive anything one task does
            log.exception("ingest task %s%r failed", getattr(fn, "__name__", fn), args)
        finally:
            with self._lock:
                self._inflight -= 1

    def _process(self, doc_id: str, collection_id: int) -> None:
        try:
            with suppress(NotFound):  # deleted while it waited
                self.service.process(doc_id)
        finally:
            with self._lock:
                self._waiting[collection_id] -= 1
                last = self._waiting[collection_id] <= 0
                if last:
                    del self._waiting[collection_id]
        if last:
            self._publish(collection_id)

    def _publish(self, collection_id: int) -> None:
        with suppress(NotFound):  # the collection was deleted meanwhile
            self.service.publish(collection_id)
