"""The scaled mode's bookkeeping against the metadata DB, the source of truth.

The broker is not a database: a message can be lost (Redis restarted without its data, an
enqueue that failed while Redis was down, a worker killed between commit and enqueue). The
DB still says what is unfinished, so a periodic reconciler redoes it:

* a document ``queued`` longer than ``reconcile_stuck_after_s`` while the ingest queue is
  empty lost its message: enqueue it again. (While the queue holds messages the document is
  most likely still waiting in it; re-enqueueing then would only duplicate work.)
* a document ``processing`` for longer than the hard task time limit (plus a grace period)
  cannot still be running anywhere: its worker died. Enqueue it again; ``process`` itself
  quarantines a file that has killed its worker ``max_processing_attempts`` times.
* a collection with nothing pending whose published index does not hold the DB's chunk
  count lost its publish: publish it. So is one whose index an older lexical analyzer
  built (``ANALYZER_VERSION``, after an upgrade): the publish re-derives its terms.
* a summary job ``queued`` that long while the summarize queue is empty, or ``running``
  with no progress for longer than its hard time limit (plus grace), lost its message or
  its worker: send it again. ``SummaryRunner.run`` restarts a job left running and skips a
  finished or cancelled one, so a duplicate is harmless.

Re-enqueued documents and jobs get a fresh ``updated_at``, so each is re-sent at most once
per threshold. A duplicate message is harmless: processing an ``indexed`` document is a no-op.

Nothing here imports Celery: the caller passes the enqueue functions (tests pass lists).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from qa.retrieval.index_store import MANIFEST_FILE, IndexStore, manifest_analyzer
from qa.retrieval.lexical import ANALYZER_VERSION
from qa.settings import Settings
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Collection, DocStatus, Document, Job, utcnow
from qa.summaries.jobs import KIND as SUMMARY
from qa.summaries.jobs import QUEUED as JOB_QUEUED
from qa.summaries.jobs import RUNNING as JOB_RUNNING

log = logging.getLogger(__name__)

#: while documents of a collection are still pending, publish it at most this often
PUBLISH_MIN_INTERVAL_S = 30.0

PENDING = (DocStatus.QUEUED, DocStatus.PROCESSING)


@dataclass(frozen=True)
class Published:
    """What the collection's current index version says about itself."""

    version: str
    count: int
    created_at: datetime
    #: the lexical analyzer version that made its BM25 terms
    analyzer: int = ANALYZER_VERSION


@dataclass
class ReconcileReport:
    requeued: list[str] = field(default_factory=list)
    republished: list[int] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "requeued": self.requeued,
            "republished": self.republished,
            "summaries": self.summaries,
        }


def processing_deadline_s(settings: Settings) -> int:
    """After this long in ``processing`` no worker can still be on the document."""
    return max(
        settings.reconcile_stuck_after_s,
        settings.ingest_task_time_limit_s + settings.reconcile_processing_grace_s,
    )


def stuck_documents(
    db: Database,
    *,
    queued_before: datetime | None,
    processing_before: datetime,
) -> list[str]:
    """Documents left ``queued`` (if ``queued_before``) or ``processing`` for too long."""
    stuck = (Document.status == DocStatus.PROCESSING) & (Document.updated_at < processing_before)
    if queued_before is not None:
        stuck = stuck | (
            (Document.status == DocStatus.QUEUED) & (Document.updated_at < queued_before)
        )
    with db.session() as session:
        return list(
            session.scalars(select(Document.id).where(stuck).order_by(Document.created_at)).all()
        )


def summary_deadline_s(settings: Settings) -> int:
    """After this long without progress a ``running`` summary has no live worker."""
    return max(
        settings.reconcile_stuck_after_s,
        settings.summarize_task_time_limit_s + settings.reconcile_processing_grace_s,
    )


def stuck_summaries(
    db: Database, *, queued_before: datetime | None, running_before: datetime
) -> list[str]:
    """Summary jobs left ``queued`` (if ``queued_before``) or ``running`` for too long."""
    stuck = (Job.status == JOB_RUNNING) & (Job.updated_at < running_before)
    if queued_before is not None:
        stuck = stuck | ((Job.status == JOB_QUEUED) & (Job.updated_at < queued_before))
    with db.session() as session:
        return list(
            session.scalars(
                select(Job.id).where(Job.kind == SUMMARY, stuck).order_by(Job.created_at)
            ).all()
        )


def touch_job(db: Database, job_id: str) -> None:
    """Restart a job's stuck clock (it was just handed to the queue again)."""
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))
        session.commit()


def touch(db: Database, doc_ids: Sequence[str]) -> None:
    """Mark documents as just handed to the queue (restarts their stuck clock)."""
    if not doc_ids:
        return
    with db.session() as session:
        session.execute(
            update(Document).where(Document.id.in_(doc_ids)).values(updated_at=utcnow())
        )
        session.commit()


def mark_queued(db: Database, doc_ids: Sequence[str]) -> None:
    """An explicit retry: ``failed`` documents go back to ``queued`` before they are sent.

    The row, not the message, carries the request: if the broker loses the message, the
    reconciler still finds a ``queued`` document. (``processing`` ones are left alone: that
    status is the evidence the quarantine counts.)
    """
    if not doc_ids:
        return
    with db.session() as session:
        session.execute(
            update(Document)
            .where(Document.id.in_(doc_ids), Document.status == DocStatus.FAILED)
            .values(status=DocStatus.QUEUED, error=None, updated_at=utcnow())
        )
        session.commit()


def published(store: IndexStore, collection_key: str) -> Published | None:
    """The current version's manifest, or None when nothing (readable) is published."""
    version = store.current_version(collection_key)
    if version is None:
        return None
    path = store.collection_dir(collection_key) / "versions" / version / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return Published(
            version,
            int(manifest["count"]),
            datetime.fromisoformat(manifest["created_at"]),
            manifest_analyzer(manifest),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # garbage-collected meanwhile, or unreadable: treat as not published


def publish_due(
    db: Database,
    store: IndexStore,
    collection_id: int,
    *,
    now: datetime | None = None,
    min_interval_s: float = PUBLISH_MIN_INTERVAL_S,
) -> bool:
    """Whether a publish requested after one document finished should run now.

    Every finished document asks for a publish; a batch of 500 must not rebuild the index
    500 times. Skipped are requests that come after a publish that already holds every
    change (requests pile up in the index queue during a batch), and, while other
    documents of the collection are pending, requests less than ``min_interval_s`` after
    the last publish: a pending document asks again when it finishes, so the request of
    the last document to finish always runs (it is enqueued after that document's commit).
    The reconciler's check of published counts catches what a wrong skip would leave.
    """
    with db.session() as session:
        coll = session.get(Collection, collection_id)
        if coll is None:
            return False
        key = coll.index_key
        docs = Document.collection_id == collection_id
        pending = session.scalar(
            select(func.count()).select_from(Document).where(docs, Document.status.in_(PENDING))
        )
        latest = session.scalar(select(func.max(Document.updated_at)).where(docs))
        chunks = session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.collection_id == collection_id)
        )
    current = published(store, key)
    if current is None or current.analyzer != ANALYZER_VERSION:
        return True
    if current.count == chunks and latest is not None and current.created_at > _aware(latest):
        return False  # nothing changed since that version was written
    if not pending:
        return True
    age = ((now or utcnow()) - current.created_at).total_seconds()
    return age >= min_interval_s


def _aware(moment: datetime) -> datetime:
    """SQLite hands stored times back without their (UTC) zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def stale_collections(db: Database, store: IndexStore) -> list[int]:
    """Collections with nothing pending whose published index disagrees with the DB."""
    with db.session() as session:
        keys = {c.id: c.index_key for c in session.scalars(select(Collection)).all()}
        chunks = dict(
            session.execute(
                select(Chunk.collection_id, func.count()).group_by(Chunk.collection_id)
            ).all()
        )
        busy = set(
            session.scalars(
                select(Document.collection_id).where(Document.status.in_(PENDING)).distinct()
            ).all()
        )
    stale = []
    for cid, key in keys.items():
        if cid in busy:
            continue
        current = published(store, key)
        # Never published counts as 0 chunks: an empty collection needs no index.
        if chunks.get(cid, 0) != (current.count if current is not None else 0) or (
            current is not None and current.analyzer != ANALYZER_VERSION
        ):
            stale.append(cid)
    return stale


def reconcile(
    db: Database,
    store: IndexStore,
    settings: Settings,
    *,
    enqueue_document: Callable[[str], None],
    enqueue_publish: Callable[[int], None],
    backlog: int | None,
    enqueue_summary: Callable[[str], None] | None = None,
    summary_backlog: int | None = None,
    now: datetime | None = None,
) -> ReconcileReport:
    """Re-enqueue what the broker lost (see the module docstring).

    ``backlog`` / ``summary_backlog`` are the numbers of messages waiting in the ingest /
    summarize queue (None: unknown, taken as empty, so that nothing stays stuck forever
    when the broker cannot say). Without ``enqueue_summary`` jobs are left alone.
    """
    now = now or utcnow()
    queued_before = (
        now - timedelta(seconds=settings.reconcile_stuck_after_s) if not backlog else None
    )
    processing_before = now - timedelta(seconds=processing_deadline_s(settings))
    report = ReconcileReport()
    for doc_id in stuck_documents(
        db, queued_before=queued_before, processing_before=processing_before
    ):
        enqueue_document(doc_id)
        # One row at a time: if the broker fails halfway, the rest keep their old clock.
        touch(db, [doc_id])
        report.requeued.append(doc_id)
    for collection_id in stale_collections(db, store):
        enqueue_publish(collection_id)
        report.republished.append(collection_id)
    if enqueue_summary is not None:
        stuck_after = timedelta(seconds=settings.reconcile_stuck_after_s)
        for job_id in stuck_summaries(
            db,
            queued_before=now - stuck_after if not summary_backlog else None,
            running_before=now - timedelta(seconds=summary_deadline_s(settings)),
        ):
            enqueue_summary(job_id)
            touch_job(db, job_id)
            report.summaries.append(job_id)
    if report.requeued or report.republished or report.summaries:
        log.warning(
            "reconciler: re-enqueued %d stuck documents and %d summary jobs, republishing"
            " %d collections",
            len(report.requeued),
            len(report.summaries),
            len(report.republished),
        )
    return report
