"""Summary jobs in the embedded mode: one background thread of the serving process.

The web app only inserts a job row and calls ``IngestQueue.summarize(job_id)``; the
embedded queue hands the id to this class, which runs ``SummaryRunner.run`` on its own
thread (never an ingest thread: a summary takes minutes, uploads must not wait for it).
One job at a time: every generation goes through the one model slot anyway.

The composition root attaches the ``SummaryService`` built on the answer service, so
summaries share its model and its slot (questions first). Until then, or in a process with
no model, jobs run extractively. Jobs left queued or running by an earlier run are resumed
on ``attach``; jobs still waiting when the process stops stay queued in the DB, and a job
interrupted by the shutdown is put back to queued (``SummaryRunner.run(stop=...)``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from qa.errors import Unavailable
from qa.retrieval.embedder import Embedder
from qa.store.db.engine import Database
from qa.summaries.jobs import SummaryRunner
from qa.summaries.service import SummaryService

log = logging.getLogger(__name__)


class EmbeddedSummaries:
    def __init__(self, db: Database, embedder: Embedder | None) -> None:
        self._db = db
        self._embedder = embedder
        self._runner: SummaryRunner | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="summarize")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._futures: set[Future[None]] = set()
        self._closed = False

    def attach(self, service: SummaryService) -> int:
        """Run jobs with ``service`` from now on; resume unfinished ones. Returns how many."""
        runner = SummaryRunner(service.db, service)
        with self._lock:
            self._runner = runner
        pending = runner.pending()
        for job_id in pending:
            self.submit(job_id)
        if pending:
            log.info("resumed %d summary jobs left unfinished by an earlier run", len(pending))
        return len(pending)

    def submit(self, job_id: str) -> None:
        with self._lock:
            if self._closed:
                raise Unavailable("the server is shutting down; submit the summary again")
            future = self._pool.submit(self._run, job_id)
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def depth(self) -> int:
        """Jobs waiting or running in this process."""
        with self._lock:
            return sum(1 for f in self._futures if not f.done())

    def wait_idle(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth() == 0:
                return True
            time.sleep(0.05)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Stop: the running job notices within a poll and goes back to queued."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self.wait_idle(timeout):
            log.warning("a summary job did not stop within %.0f s", timeout)

    def _runner_now(self) -> SummaryRunner:
        with self._lock:
            if self._runner is None:
                # Nothing attached (a process without the answer side): quote, don't generate.
                log.info("no summary service attached: summaries are extractive")
                self._runner = SummaryRunner(self._db, SummaryService(self._db, self._embedder))
            return self._runner

    def _run(self, job_id: str) -> None:
        try:
            self._runner_now().run(job_id, stop=self._stop)
        except Exception:  # the thread must survive anything one job does
            log.exception("summary job %s failed", job_id)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)
