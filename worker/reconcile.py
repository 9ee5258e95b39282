"""The scaled mode's bookkeeping against the metadata DB, the source of truth.

The broker is not a database: a message can be lost (Redis restarted without its data, an
enqueue that failed while Redis was down, a worker killed between commit and enqueue). The
DB still says what is unfinished, so a periodic reconciler redoes it:

* a document ``queued`` longer than ``reconcile_stuck_after_s`` while the ingest queue is
  empty lost its message: enqueue it again. (While the queue holds messages the document is
  most likely still waiting in it; re-enqueueing then would only duplicate work.)
* a document ``processing`` claimed by a worker whose heartbeat expired
  (``worker.heartbeat``) has no worker: enqueue it again, within seconds of the worker's
  death instead of after the task time limit. A worker that restarts under the same node
  name takes back its own ``processing`` documents at once (``reclaim_own``, on start).
* a document ``processing`` for longer than the hard task time limit (plus a grace period)
  cannot still be running anywhere (this also covers rows claimed before heartbeats, and a
  Redis that cannot tell): enqueue it again. ``process`` itself quarantines a file that
  has killed its worker ``max_processing_attempts`` times.
* a collection whose published index is behind the DB (another chunk count, or an
  ``indexed`` document newer than the version) lost its publish: publish it, pending
  documents or not (an ``indexed`` document is searchable after the next publish, never
  held back by a stuck one). So is one whose index an older lexical analyzer built
  (``ANALYZER_VERSION``, after an upgrade): the publish re-derives its terms.
* a reindex request (``collections.reindex_requested_at``) older than
  ``reconcile_stuck_after_s``, or any, when the index worker starts: its message was lost
  (with the index worker that held it, say): send it again.
* a summary job ``queued`` that long while the summarize queue is empty, or ``running``
  with no progress for longer than its hard time limit (plus grace), lost its message or
  its worker: send it again. ``SummaryRunner.run`` restarts a job left running and skips a
  finished or cancelled one, so a duplicate is harmless.

Re-enqueued documents and jobs get a fresh ``updated_at``, so each is re-sent at most once
per threshold. A duplicate message is harmless: processing an ``indexed`` document is a no-op.

Nothing here imports Celery: the caller passes the enqueue functions (tests pass lists).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from qa.retrieval.index_store import IndexStore, manifest_analyzer
from qa.retrieval.lexical import ANALYZER_VERSION
from qa.settings import Settings
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Collection, DocStatus, Document, Job, utcnow
from qa.summaries.jobs import KIND as SUMMARY
from qa.summaries.jobs import QUEUED as JOB_QUEUED
from qa.summaries.jobs import RUNNING as JOB_RUNNING

log = logging.getLogger(__name__)

#: which of some worker nodes have a live heartbeat (None: cannot tell); see worker.heartbeat
AliveNodes = Callable[[Set[str]], "set[str] | None"]

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
    reindexed: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "requeued": self.requeued,
            "republished": self.republished,
            "summaries": self.summaries,
            "reindexed": self.reindexed,
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


def orphaned_documents(db: Database, alive: AliveNodes, *, claimed_before: datetime) -> list[str]:
    """Documents ``processing`` on a worker whose heartbeat expired (claimed before
    ``claimed_before``: one re-send per heartbeat TTL). None of them when Redis cannot
    tell which workers are alive: the processing deadline still applies."""
    with db.session() as session:
        rows = session.execute(
            select(Document.id, Document.claimed_by)
            .where(
                Document.status == DocStatus.PROCESSING,
                Document.claimed_by.is_not(None),
                Document.updated_at < claimed_before,
            )
            .order_by(Document.created_at)
        ).all()
    if not rows:
        return []
    live = alive({node for _, node in rows if node is not None})
    if live is None:
        return []
    return [doc_id for doc_id, node in rows if node not in live]


def documents_to_resend(
    db: Database,
    settings: Settings,
    alive: AliveNodes | None,
    *,
    queued_before: datetime | None,
    now: datetime,
) -> list[str]:
    """What the reconciler sends again: documents ``stuck_documents`` finds (``processing``
    past the processing deadline; ``queued`` too if ``queued_before``), then those of a dead
    worker (``orphaned_documents``, when ``alive`` can tell)."""
    stuck = stuck_documents(
        db,
        queued_before=queued_before,
        processing_before=now - timedelta(seconds=processing_deadline_s(settings)),
    )
    if alive is not None:
        claimed_before = now - timedelta(seconds=settings.worker_heartbeat_ttl_s)
        seen = set(stuck)
        stuck += [
            d for d in orphaned_documents(db, alive, claimed_before=claimed_before) if d not in seen
        ]
    return stuck


def reclaim_own(db: Database, node: str, enqueue_document: Callable[[str], None]) -> list[str]:
    """On a worker's start: send again the documents an earlier run of the same node left
    ``processing`` (it was killed: a node name belongs to one live worker at a time)."""
    with db.session() as session:
        own = list(
            session.scalars(
                select(Document.id).where(
                    Document.status == DocStatus.PROCESSING, Document.claimed_by == node
                )
            ).all()
        )
    for doc_id in own:
        enqueue_document(doc_id)
        touch(db, [doc_id])
    if own:
        log.warning("%s: took back %d documents its earlier run left processing", node, len(own))
    return own


def reindex_requests(db: Database, *, requested_before: datetime | None) -> list[int]:
    """Collections with a reindex request older than ``requested_before`` (None: any)."""
    query = select(Collection.id).where(Collection.reindex_requested_at.is_not(None))
    if requested_before is not None:
        query = query.where(Collection.reindex_requested_at < requested_before)
    with db.session() as session:
        return list(session.scalars(query.order_by(Collection.id)).all())


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
            .values(
                status=DocStatus.QUEUED,
                error=None,
                error_code=None,
                error_i18n=None,
                updated_at=utcnow(),
            )
        )
        session.commit()


def published(store: IndexStore, collection_key: str) -> Published | None:
    """The current version's manifest, or None when nothing (readable) is published."""
    manifest = store.current_manifest(collection_key)
    if manifest is None:
        return None
    try:
        return Published(
            str(manifest["version"]),
            int(manifest["count"]),
            datetime.fromisoformat(manifest["created_at"]),
            manifest_analyzer(manifest),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a manifest without them is unreadable: treat as not published


def publish_due(db: Database, store: IndexStore, collection_id: int) -> bool:
    """Whether a publish requested after one document finished should run now.

    Every finished document asks for a publish, whatever else of its collection is still
    pending: an ``indexed`` document must be searchable after the next publish, not when
    its whole batch (or a document stuck on a dead worker) is done. Requests are coalesced:
    skipped when a version written after the change already holds it (requests pile up in
    the index queue while one publish runs; the next one holds all their documents), so
    during a long batch the one index writer publishes back to back, never once per file.
    """
    with db.session() as session:
        coll = session.get(Collection, collection_id)
        if coll is None:
            return False
        key = coll.index_key
        latest = session.scalar(
            select(func.max(Document.updated_at)).where(
                Document.collection_id == collection_id, Document.status == DocStatus.INDEXED
            )
        )
        chunks = session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.collection_id == collection_id)
        )
    return _behind(published(store, key), chunks or 0, latest)


def _behind(current: Published | None, chunks: int, latest_indexed: datetime | None) -> bool:
    """Whether a collection's published version lacks something the DB holds: another
    chunk count (never published counts as 0: an empty collection needs no index), an
    ``indexed`` document newer than the version, or terms of an older analyzer."""
    if current is None:
        return chunks > 0
    if current.analyzer != ANALYZER_VERSION or current.count != chunks:
        return True
    return latest_indexed is not None and _aware(latest_indexed) >= current.created_at


def _aware(moment: datetime) -> datetime:
    """SQLite hands stored times back without their (UTC) zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def stale_collections(db: Database, store: IndexStore) -> list[int]:
    """Collections whose published index is behind the DB, pending documents or not."""
    with db.session() as session:
        keys = {c.id: c.index_key for c in session.scalars(select(Collection)).all()}
        chunks = dict(
            session.execute(
                select(Chunk.collection_id, func.count()).group_by(Chunk.collection_id)
            ).all()
        )
        latest = dict(
            session.execute(
                select(Document.collection_id, func.max(Document.updated_at))
                .where(Document.status == DocStatus.INDEXED)
                .group_by(Document.collection_id)
            ).all()
        )
    return [
        cid
        for cid, key in keys.items()
        if _behind(published(store, key), chunks.get(cid, 0), latest.get(cid))
    ]


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
    alive: AliveNodes | None = None,
    enqueue_reindex: Callable[[int], None] | None = None,
    startup: bool = False,
    now: datetime | None = None,
) -> ReconcileReport:
    """Re-enqueue what the broker lost (see the module docstring).

    ``backlog`` / ``summary_backlog`` are the numbers of messages waiting in the ingest /
    summarize queue (None: unknown, taken as empty, so that nothing stays stuck forever
    when the broker cannot say). Without ``enqueue_summary`` jobs are left alone; without
    ``alive`` (the worker heartbeats) only the processing deadline applies; without
    ``enqueue_reindex`` reindex requests are left alone. ``startup``: the index worker has
    just started, so every reindex request is sent again (the message of one it was
    running when it died is held by the broker until the visibility timeout).
    """
    now = now or utcnow()
    queued_before = (
        now - timedelta(seconds=settings.reconcile_stuck_after_s) if not backlog else None
    )
    report = ReconcileReport()
    for doc_id in documents_to_resend(db, settings, alive, queued_before=queued_before, now=now):
        enqueue_document(doc_id)
        # One row at a time: if the broker fails halfway, the rest keep their old clock.
        touch(db, [doc_id])
        report.requeued.append(doc_id)
    if enqueue_reindex is not None:
        stuck_after = timedelta(seconds=settings.reconcile_stuck_after_s)
        for collection_id in reindex_requests(
            db, requested_before=None if startup else now - stuck_after
        ):
            enqueue_reindex(collection_id)
            report.reindexed.append(collection_id)
    for collection_id in stale_collections(db, store):
        if collection_id not in report.reindexed:
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
    if report.requeued or report.republished or report.summaries or report.reindexed:
        log.warning(
            "reconciler: re-enqueued %d stuck documents and %d summary jobs, republishing"
            " %d collections, reindexing %d",
            len(report.requeued),
            len(report.summaries),
            len(report.republished),
            len(report.reindexed),
        )
    return report
