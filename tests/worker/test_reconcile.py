"""The scaled mode's bookkeeping without Celery: reconciler, publish coalescing, quarantine.

Real DB (SQLite and PostgreSQL), real sandbox and embedder; the "broker" is a list.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from ingest.pipeline import IngestService, Outcome
from qa.retrieval.embedder import Embedder
from qa.retrieval.index_store import MANIFEST_FILE, IndexReader
from qa.retrieval.lexical import ANALYZER_VERSION, bm25_terms
from qa.retrieval.publish import unpublished_chunks
from qa.settings import Settings
from qa.store.catalog import reindex_done, request_reindex
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, DocStatus, Document, Job, utcnow
from tests.ingest.ingest_service import ingest_service
from tests.worker.celery_support import private_redis_db
from worker.heartbeat import Heartbeats
from worker.lifecycle import release_claims
from worker.reconcile import (
    AliveNodes,
    mark_queued,
    orphaned_documents,
    processing_deadline_s,
    publish_due,
    published,
    reclaim_own,
    reconcile,
    reindex_requests,
    stale_collections,
    summary_deadline_s,
)


@pytest.fixture
def service(tmp_path: Path, db: Database, embedder: Embedder) -> Iterator[IngestService]:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=db.url,
        reconcile_stuck_after_s=60,
        ingest_task_time_limit_s=120,
        summarize_task_time_limit_s=300,
        max_processing_attempts=3,
        worker_heartbeat_ttl_s=3,
    )
    with ingest_service(settings, db, embedder) as svc:
        yield svc


def _submit(service: IngestService, name: str, text: str, collection: str = "docs") -> str:
    return service.submit_stream(collection, io.BytesIO(text.encode()), name).document_id


def _set(db: Database, doc_id: str, *, age_s: float | None = None, **values: object) -> None:
    if age_s is not None:
        values["updated_at"] = utcnow() - timedelta(seconds=age_s)
    with db.session() as session:
        session.execute(update(Document).where(Document.id == doc_id).values(**values))
        session.commit()


def _doc(db: Database, doc_id: str) -> Document:
    with db.session() as session:
        doc = session.get(Document, doc_id)
        assert doc is not None
        session.expunge(doc)
        return doc


def _job(db: Database, status: str, age_s: float) -> str:
    """A summary job row last touched ``age_s`` ago."""
    job_id = uuid.uuid4().hex
    with db.session() as session:
        session.add(Job(id=job_id, kind="summary", status=status, payload={}, progress=0.0))
        session.commit()
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(updated_at=utcnow() - timedelta(seconds=age_s))
        )
        session.commit()
    return job_id


class Broker:
    def __init__(self) -> None:
        self.documents: list[str] = []
        self.publishes: list[int] = []
        self.summaries: list[str] = []

    def run(
        self,
        service: IngestService,
        backlog: int | None = 0,
        summary_backlog: int | None = 0,
        *,
        alive: AliveNodes | None = None,
        enqueue_reindex: Callable[[int], None] | None = None,
        startup: bool = False,
        now: datetime | None = None,
    ) -> None:
        reconcile(
            service.db,
            service.indexes,
            service.settings,
            enqueue_document=self.documents.append,
            enqueue_publish=self.publishes.append,
            backlog=backlog,
            enqueue_summary=self.summaries.append,
            summary_backlog=summary_backlog,
            alive=alive,
            enqueue_reindex=enqueue_reindex,
            startup=startup,
            now=now,
        )


def test_stuck_documents_are_requeued_once_per_threshold(service: IngestService) -> None:
    db = service.db
    deadline = processing_deadline_s(service.settings)
    assert deadline == 120 + 15  # past the hard time limit, no worker can still be on it
    lost = _submit(service, "lost.md", "queued long ago, its message was lost")
    fresh = _submit(service, "fresh.md", "queued a moment ago")
    dead = _submit(service, "dead.md", "its worker died")
    busy = _submit(service, "busy.md", "still within the time limit")
    done = _submit(service, "done.md", "indexed long ago")
    _set(db, lost, age_s=61)
    _set(db, dead, age_s=deadline + 1, status=DocStatus.PROCESSING, attempts=1)
    _set(db, busy, age_s=deadline - 20, status=DocStatus.PROCESSING, attempts=1)
    _set(db, done, age_s=10_000, status=DocStatus.INDEXED)

    broker = Broker()
    broker.run(service)
    assert sorted(broker.documents) == sorted([lost, dead])
    assert fresh not in broker.documents
    # Their clock restarted: the next run (a few seconds later) leaves them alone.
    touched = _doc(db, lost).updated_at
    assert utcnow() - touched.replace(tzinfo=touched.tzinfo or UTC) < timedelta(seconds=5)
    again = Broker()
    again.run(service)
    assert again.documents == []
    # Status and attempts are the task's business, not the reconciler's.
    assert _doc(db, dead).status == DocStatus.PROCESSING and _doc(db, dead).attempts == 1


def test_queued_documents_wait_while_the_ingest_queue_has_a_backlog(
    service: IngestService,
) -> None:
    db = service.db
    waiting = _submit(service, "waiting.md", "behind 500 others in the queue")
    dead = _submit(service, "dead.md", "its worker died")
    _set(db, waiting, age_s=3600)
    _set(db, dead, age_s=3600, status=DocStatus.PROCESSING)
    broker = Broker()
    broker.run(service, backlog=500)
    assert broker.documents == [dead]
    unknown = Broker()  # the broker could not say: nothing may stay stuck forever
    unknown.run(service, backlog=None)
    assert unknown.documents == [waiting]


def test_a_lost_publish_is_redone_and_an_up_to_date_index_is_left_alone(
    service: IngestService,
) -> None:
    doc = _submit(service, "a.md", "# Lighthouses\n\nKeepers trimmed the wicks every night.\n")
    assert service.process(doc).outcome == Outcome.INDEXED
    coll = _doc(service.db, doc).collection_id
    _submit(service, "empty.md", "", collection="empty")  # nothing to index: no publish
    # Indexed, but the publish message was lost.
    assert stale_collections(service.db, service.indexes) == [coll]
    broker = Broker()
    broker.run(service)
    assert broker.publishes == [coll] and broker.documents == []

    service.publish(coll)
    assert stale_collections(service.db, service.indexes) == []


def test_an_index_built_by_an_older_analyzer_is_republished_with_terms_derived_again(
    service: IngestService,
) -> None:
    text = "# 差旅\n\n倫敦的酒店每晚上限為二百二十歐元。員工每年享有十五天帶薪年假。\n"
    doc = _submit(service, "policy.md", text)
    assert service.process(doc).outcome == Outcome.INDEXED
    coll = _doc(service.db, doc).collection_id
    service.publish(coll)
    key = f"c{coll}"
    # What a version before ANALYZER_VERSION 2 left: Traditional terms as written, and a
    # manifest without an analyzer field.
    with service.db.session() as s:
        s.execute(update(Chunk).where(Chunk.collection_id == coll).values(terms="倫敦 酒店"))
        s.commit()
    current = published(service.indexes, key)
    assert current is not None and current.analyzer == ANALYZER_VERSION
    manifest_path = (
        service.indexes.collection_dir(key) / "versions" / current.version / MANIFEST_FILE
    )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["analyzer"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    old = published(service.indexes, key)
    assert old is not None and old.analyzer == 1
    assert stale_collections(service.db, service.indexes) == [coll]
    assert publish_due(service.db, service.indexes, coll)
    republished = service.publish(coll)
    assert republished.reanalyzed == republished.count > 0
    assert stale_collections(service.db, service.indexes) == []
    with service.db.session() as s:
        chunks = s.query(Chunk).filter(Chunk.collection_id == coll).all()
        assert all(c.terms == " ".join(bm25_terms(c.text)) for c in chunks)
        assert any("倫敦" in c.text for c in chunks)  # the text keeps its script
    index = IndexReader(service.indexes).get(key)
    assert index.analyzer == ANALYZER_VERSION
    assert index.search_lexical(bm25_terms("伦敦酒店的上限"), 1)
    # an up-to-date index is not analyzed again
    assert service.publish(coll).reanalyzed == 0


def test_an_indexed_document_is_published_while_others_of_its_collection_are_pending(
    service: IngestService,
) -> None:
    """Issue 12 defect 6: a document stuck ``processing`` (its worker killed) held back
    every publish of its collection, so documents shown as ``indexed`` were not searchable
    until the stuck one ended. Each publish request now runs unless a newer version holds
    the change, and the reconciler republishes a stale collection, pending documents or not."""
    db, store = service.db, service.indexes
    first = _submit(service, "first.md", "# One\n\nThe first document of a long batch.\n")
    later = _submit(service, "later.md", "# Two\n\nIndexed while another one is stuck.\n")
    stuck = _submit(service, "stuck.md", "Its worker was killed mid-way.")
    coll = _doc(db, first).collection_id
    assert service.process(first).outcome == Outcome.INDEXED
    assert publish_due(db, store, coll)  # nothing published yet
    service.publish(coll)
    key = f"c{coll}"

    _set(db, stuck, status=DocStatus.PROCESSING, attempts=1)
    assert service.process(later).outcome == Outcome.INDEXED
    assert publish_due(db, store, coll)  # not held back by the stuck document
    assert stale_collections(db, store) == [coll]
    assert unpublished_chunks(db, store) == {"docs": 1}  # what /readyz and /metrics say
    broker = Broker()
    broker.run(service)
    assert broker.publishes == [coll] and broker.documents == []

    version = service.publish(coll).version
    current = published(store, key)
    assert current is not None and (current.version, current.count) == (version, 2)
    # Requests that piled up behind that publish are coalesced away.
    assert not publish_due(db, store, coll)
    assert stale_collections(db, store) == []
    assert unpublished_chunks(db, store) == {}


def test_retry_marks_failed_documents_queued_but_leaves_processing_ones(
    service: IngestService,
) -> None:
    db = service.db
    failed = _submit(service, "failed.pdf", "%PDF-1.7 broken")
    running = _submit(service, "running.md", "in progress")
    _set(db, failed, status=DocStatus.FAILED, error="malformed PDF", attempts=1)
    _set(db, running, status=DocStatus.PROCESSING, attempts=2)
    mark_queued(db, [failed, running])
    assert (_doc(db, failed).status, _doc(db, failed).error) == (DocStatus.QUEUED, None)
    assert _doc(db, running).status == DocStatus.PROCESSING


# -- quarantine (IngestService.process) -----------------------------------------------


def test_a_document_whose_worker_died_too_often_is_quarantined_without_parsing(
    service: IngestService,
) -> None:
    db = service.db
    poison = _submit(service, "poison.md", "# Poison\n\nThis file took its worker down.\n")
    # Three starts that never finished: status still ``processing``.
    _set(db, poison, status=DocStatus.PROCESSING, attempts=3)
    result = service.process(poison)
    assert result.outcome == Outcome.FAILED
    doc = _doc(db, poison)
    assert doc.status == DocStatus.FAILED
    assert doc.error is not None and doc.error.startswith("parser crashed")
    assert "quarantined" in doc.error
    assert doc.attempts == 3 and doc.chunk_count == 0  # not started a fourth time


def test_an_interrupted_document_below_the_limit_is_processed_again(
    service: IngestService,
) -> None:
    doc_id = _submit(service, "once.md", "# Once\n\nIts first worker was killed mid-way.\n")
    _set(service.db, doc_id, status=DocStatus.PROCESSING, attempts=2)
    assert service.process(doc_id).outcome == Outcome.INDEXED
    doc = _doc(service.db, doc_id)
    assert (doc.status, doc.attempts) == (DocStatus.INDEXED, 3)


def test_an_explicit_retry_of_a_quarantined_document_parses_it_again(
    service: IngestService,
) -> None:
    """Quarantine counts starts that never finished; a ``failed`` row always parses."""
    doc_id = _submit(service, "fixed.md", "# Fixed\n\nThe admin retried it after a fix.\n")
    _set(
        service.db,
        doc_id,
        status=DocStatus.FAILED,
        error="parser crashed: its worker died while processing it (3 starts); quarantined",
        attempts=3,
    )
    mark_queued(service.db, [doc_id])  # what CeleryIngestQueue.retry does first
    assert service.process(doc_id).outcome == Outcome.INDEXED
    _set(service.db, doc_id, status=DocStatus.FAILED, attempts=7)  # the embedded queue's retry
    assert service.process(doc_id).outcome == Outcome.INDEXED
    assert _doc(service.db, doc_id).attempts == 8


def test_summary_jobs_whose_message_or_worker_was_lost_are_sent_again(
    service: IngestService,
) -> None:
    db = service.db
    deadline = summary_deadline_s(service.settings)
    assert deadline == 300 + 15  # past the summary's hard time limit
    lost = _job(db, "queued", age_s=61)
    fresh = _job(db, "queued", age_s=5)
    dead = _job(db, "running", age_s=deadline + 1)
    busy = _job(db, "running", age_s=deadline - 30)  # progress written recently enough
    finished = [_job(db, status, age_s=10_000) for status in ("done", "failed", "cancelled")]

    broker = Broker()
    broker.run(service)
    assert sorted(broker.summaries) == sorted([lost, dead])
    assert not {fresh, busy, *finished} & set(broker.summaries)
    assert broker.documents == []
    # Sent once per threshold: the next run leaves them alone.
    again = Broker()
    again.run(service)
    assert again.summaries == []
    # The status is the runner's business: a re-sent running job is restarted by it.
    with db.session() as session:
        assert session.get(Job, dead).status == "running"  # type: ignore[union-attr]


def test_queued_summaries_wait_while_the_summarize_queue_has_a_backlog(
    service: IngestService,
) -> None:
    db = service.db
    waiting = _job(db, "queued", age_s=61)
    dead = _job(db, "running", age_s=summary_deadline_s(service.settings) + 1)
    broker = Broker()
    broker.run(service, summary_backlog=4)
    assert broker.summaries == [dead]  # a dead run is no queued message
    unknown = Broker()  # the broker could not say: nothing may stay stuck forever
    unknown.run(service, summary_backlog=None)
    assert unknown.summaries == [waiting]
    # Without a summary queue to send to (an older caller), jobs are left alone.
    report = reconcile(
        db,
        service.indexes,
        service.settings,
        enqueue_document=lambda _: None,
        enqueue_publish=lambda _: None,
        backlog=0,
        now=utcnow() + timedelta(days=1),
    )
    assert report.summaries == []


# -- a dead worker's documents, reindex requests (issue 12 defects 7, 8) ----------------

#: the shared Redis, a database of this module's own (flushed before and after each test)
REDIS_URL = os.environ.get("DOCQA_TEST_REDIS_URL_RECONCILE", "redis://127.0.0.1:6379/9")


@pytest.fixture
def heartbeats() -> Iterator[Heartbeats]:
    for url in private_redis_db(REDIS_URL):
        beats = Heartbeats.from_url(url, ttl_s=3)  # as the service's settings say
        try:
            yield beats
        finally:
            beats.close()


def test_documents_of_a_worker_whose_heartbeat_expired_are_sent_again_at_once(
    service: IngestService, heartbeats: Heartbeats
) -> None:
    """Defect 7: a killed worker's document waited for the 15-minute stuck limit. Claimed
    by a node with no heartbeat in Redis, it is sent again by the next reconciler run."""
    db = service.db
    assert processing_deadline_s(service.settings) > 100  # not what sends these
    dead = _submit(service, "dead.md", "its worker was killed")
    live = _submit(service, "live.md", "its worker is still on it")
    fresh = _submit(service, "fresh.md", "claimed a moment ago")
    legacy = _submit(service, "legacy.md", "claimed before heartbeats existed")
    _set(db, dead, age_s=5, status=DocStatus.PROCESSING, claimed_by="ingest-a@h")
    _set(db, live, age_s=5, status=DocStatus.PROCESSING, claimed_by="ingest-b@h")
    _set(db, fresh, age_s=0, status=DocStatus.PROCESSING, claimed_by="ingest-a@h")
    _set(db, legacy, age_s=5, status=DocStatus.PROCESSING)
    # ingest-b beats (with a TTL that outlasts the test); ingest-a's heartbeat is gone.
    Heartbeats(heartbeats.client, ttl_s=60).beat("ingest-b@h")

    broker = Broker()
    broker.run(service, alive=heartbeats.alive)
    assert broker.documents == [dead]
    again = Broker()  # sent once per heartbeat TTL: its clock restarted
    again.run(service, alive=heartbeats.alive)
    assert again.documents == []
    assert orphaned_documents(
        db, heartbeats.alive, claimed_before=utcnow() + timedelta(seconds=1)
    ) == [dead, fresh]
    # A Redis up for less than a TTL (restarted: every heartbeat lost) proves nothing.
    restarted = Heartbeats(heartbeats.client, ttl_s=10**9)
    assert restarted.alive({"ingest-b@h"}) is None
    late = utcnow() + timedelta(seconds=60)
    assert orphaned_documents(db, restarted.alive, claimed_before=late) == []


def test_a_restarted_worker_takes_back_its_own_documents_and_a_stopped_one_releases_them(
    service: IngestService,
) -> None:
    db = service.db
    mine = _submit(service, "mine.md", "# Mine\n\nIts worker was killed mid-way.\n")
    other = _submit(service, "other.md", "another worker is on it")
    done = _submit(service, "done.md", "finished before the kill")
    _set(db, other, status=DocStatus.PROCESSING, claimed_by="ingest@h2")
    _set(db, done, status=DocStatus.INDEXED, claimed_by="ingest@h1")
    # The claim is recorded by the start of processing (the worker was killed after it).
    _set(db, mine, status=DocStatus.PROCESSING, attempts=1, claimed_by="ingest@h1")

    sent: list[str] = []
    assert reclaim_own(db, "ingest@h1", sent.append) == [mine] == sent
    assert service.process(mine, worker="ingest@h1").outcome == Outcome.INDEXED
    assert _doc(db, mine).claimed_by == "ingest@h1" and _doc(db, mine).attempts == 2

    # A worker that stopped cleanly (Celery requeued its tasks) leaves nothing to take back.
    _set(db, mine, status=DocStatus.PROCESSING)
    settings = Settings(data_dir=service.settings.data_dir, database_url=db.url)
    assert release_claims(settings, "ingest@h1") == 1
    assert _doc(db, mine).claimed_by is None and _doc(db, other).claimed_by == "ingest@h2"
    assert reclaim_own(db, "ingest@h1", sent.append) == []


def test_a_reindex_request_outlives_its_message(service: IngestService) -> None:
    """Defect 8: an index worker killed while it held the reindex message dropped the
    request. The row carries it; the index worker's start sends every one again, the
    periodic run those older than the stuck limit; a publish that started after the
    request clears it, a newer request stays."""
    db = service.db
    doc = _submit(service, "a.md", "# Tides\n\nHigh water twice a day.\n")
    assert service.process(doc).outcome == Outcome.INDEXED
    coll = _doc(db, doc).collection_id
    service.publish(coll)
    with db.session() as session:
        requested = request_reindex(session, coll)
        session.commit()

    reindexes: list[int] = []
    broker = Broker()
    broker.run(service, enqueue_reindex=reindexes.append)
    assert reindexes == []  # its message is most likely still in the index queue
    broker.run(service, enqueue_reindex=reindexes.append, startup=True)
    assert reindexes == [coll] and broker.publishes == []
    broker.run(service, enqueue_reindex=reindexes.append, now=utcnow() + timedelta(seconds=61))
    assert reindexes == [coll, coll]

    with db.session() as session:  # a request made while a publish ran is not cleared
        reindex_done(session, coll, requested - timedelta(seconds=1))
        session.commit()
    assert reindex_requests(db, requested_before=None) == [coll]
    service.publish(coll)
    assert reindex_requests(db, requested_before=None) == []
