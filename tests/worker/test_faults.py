"""Faults of the scaled mode, against real ``docqa worker`` processes, a private
``redis-server`` per test (so it can be killed and restarted) and a fresh PostgreSQL DB.

The workers' parser misbehaves on cue (``tests.worker.worker_hooks``): a document that
starts with ``#sleep <s>`` is slow, ``#segfault`` crashes the parser child, ``#killworker``
kills the worker pool process that is processing it.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import IngestService
from qa.errors import Unavailable
from qa.retrieval.embedder import Embedder
from qa.retrieval.index_store import IndexStore
from qa.settings import Settings
from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database
from qa.store.db.models import DocStatus
from tests.worker.celery_support import (
    RedisServer,
    Scaled,
    WorkerProcess,
    chunk_texts,
    documents,
    statuses,
    wait_until,
    worker_env,
)
from worker.reconcile import reindex_requests

#: ~55 chunks of distinct sentences: enough text that duplicated chunks would show
LONG_TEXT = "\n\n".join(
    f"Section {i}. The lighthouse keeper of station {i} logged {i * 7} ships, "
    f"{i * 3} storms and {i % 5} fog horns during the winter of year {1900 + i}."
    for i in range(300)
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def _scaled(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, embedder: Embedder, **extra: str
) -> Scaled:
    return Scaled(worker_env(tmp_path / "var", redis_server.url(), postgres_url, **extra), embedder)


def _expected_chunks(tmp_path: Path, embedder: Embedder, name: str, text: str) -> int:
    """What processing ``text`` once yields, by the same pipeline in-process (SQLite)."""
    settings = Settings(data_dir=tmp_path / "reference")
    db = Database(settings.db_url)
    service = IngestService(
        settings, db, BlobStore(settings.blob_dir), embedder, IndexStore(settings.index_dir)
    )
    try:
        doc_id = service.submit_stream("ref", io.BytesIO(text.encode()), name).document_id
        return service.process(doc_id).chunks
    finally:
        service.close()
        db.dispose()


def _processed_ids(log: str) -> list[str]:
    """Document ids a worker's log says it finished (any outcome)."""
    return re.findall(r"worker.tasks:document ([0-9a-f]{40}) ", log)


@pytest.mark.slow
def test_kill9_of_a_worker_mid_task_is_taken_back_by_its_restart_and_indexed_once(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, embedder: Embedder
) -> None:
    """The whole worker dies mid-task (SIGKILL to its process group, as when a machine or
    container is lost). No reconciler runs here, and the broker would deliver the task
    again only after its visibility timeout (65 s): the worker's restart under the same
    node name sends the document it left ``processing`` at once (issue 12 defect 7)."""
    slow_text = "#sleep 4\n\n" + LONG_TEXT
    expected = _expected_chunks(tmp_path, embedder, "slow.txt", slow_text)
    assert expected > 40
    side = _scaled(tmp_path, redis_server, postgres_url, embedder, DOCQA_WORKER_HEARTBEAT_TTL_S="3")
    visibility_s = side.settings.broker_visibility_timeout_s
    try:
        slow = side.submit_text("slow.txt", slow_text)
        side.submit_text("after.md", "# After\n\nQueued behind the slow document.\n")
        first = WorkerProcess(side.env, tmp_path / "a.log").start()
        try:
            wait_until(
                lambda: statuses(side.db_url)["slow.txt"] == DocStatus.PROCESSING,
                60,
                "the slow document to start",
            )
            first.kill9()
            killed = time.monotonic()
        finally:
            first.stop()
        assert documents(side.db_url)["slow.txt"].chunks == 0  # nothing half-written
        # /readyz and /metrics count it once the dead worker's heartbeat expired (3 s)
        wait_until(lambda: side.queue.stuck_processing() == 1, 15, "the heartbeat to expire")

        with WorkerProcess(side.env, tmp_path / "b.log") as second:
            restarted = time.monotonic()
            final = side.wait_done(timeout=60)  # "within 1 minute of the restart"
            done_after_restart = time.monotonic() - restarted
            # the publish is a task of its own: wait for it while the worker still runs
            total = sum(d.chunks for d in documents(side.db_url).values())
            wait_until(lambda: side.index_count()[1] == total, 30, "the publish")
            log = second.log()
        assert time.monotonic() - killed < visibility_s  # not the broker's redelivery
        assert final == {"slow.txt": DocStatus.INDEXED, "after.md": DocStatus.INDEXED}
        assert "took back 1 documents its earlier run left processing" in log
        docs = documents(side.db_url)
        assert docs["slow.txt"].attempts == 2  # started twice, indexed once
        assert docs["slow.txt"].chunks == docs["slow.txt"].chunk_count == expected
        assert docs["after.md"].attempts == 1
        assert _processed_ids(log).count(slow) == 1
        print(f"killed run's document ended {done_after_restart:.1f} s after the restart")
    finally:
        side.close()


def test_sigterm_acks_finished_tasks_and_requeues_the_running_one(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, embedder: Embedder
) -> None:
    """``docker stop``: the worker lets its running task finish for ``--stop-grace`` seconds;
    one that needs longer is cancelled and delivered again, at once, to the next worker.
    Tasks finished before the signal are acknowledged: nobody processes them again."""
    side = _scaled(tmp_path, redis_server, postgres_url, embedder)
    try:
        quick = [
            side.submit_text(f"q{i}.md", f"# Quick {i}\n\nShort note {i}.\n") for i in range(2)
        ]
        # It outlives the 2 s stop grace (by 4 s after it starts), at both deliveries.
        slow = side.submit_text("slow.txt", "#sleep 6\n\nA document that takes a while.\n")
        later = [side.submit_text(f"l{i}.md", f"# Later {i}\n\nNot started.\n") for i in range(2)]
        first = WorkerProcess(side.env, tmp_path / "a.log", stop_grace=2).start()
        try:
            wait_until(
                lambda: statuses(side.db_url)["slow.txt"] == DocStatus.PROCESSING,
                60,
                "the slow document to start",
            )
            first.sigterm()
            assert first.wait_exit(30) is not None
        finally:
            first.stop()
        mid = documents(side.db_url)
        assert [mid[f"q{i}.md"].status for i in range(2)] == [DocStatus.INDEXED] * 2
        assert (mid["slow.txt"].status, mid["slow.txt"].attempts) == (DocStatus.PROCESSING, 1)
        assert [mid[f"l{i}.md"].status for i in range(2)] == [DocStatus.QUEUED] * 2

        started = time.monotonic()
        with WorkerProcess(side.env, tmp_path / "b.log") as second:
            final = side.wait_done(timeout=90)
            # Requeued at once, not after the 65 s visibility timeout.
            assert time.monotonic() - started < 55
            log = second.log()
        assert set(final.values()) == {DocStatus.INDEXED}
        assert documents(side.db_url)["slow.txt"].attempts == 2
        done_by_second = _processed_ids(log)
        assert sorted(done_by_second) == sorted([slow, *later])  # not the quick ones again
        assert not set(quick) & set(done_by_second)
    finally:
        side.close()


@pytest.mark.slow
def test_redis_restarted_mid_batch_loses_no_accepted_upload(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, embedder: Embedder
) -> None:
    """Redis dies mid-batch and comes back empty (no persistence): every message is gone.
    An upload meanwhile answers ``Unavailable`` but keeps its row; the reconciler (beat in
    the index worker) re-enqueues everything the DB says is unfinished."""
    # A 25 s hard limit and a 5 s grace: a task cut off by the connection loss counts as
    # dead (and is sent again by the reconciler) 30 s after it started. Its soft limit of
    # 20 s leaves room for a fresh pool process to load the model on a loaded machine.
    side = _scaled(
        tmp_path,
        redis_server,
        postgres_url,
        embedder,
        DOCQA_INGEST_TASK_TIME_LIMIT_S="25",
        DOCQA_INGEST_TASK_SOFT_TIME_LIMIT_S="20",
        DOCQA_RECONCILE_PROCESSING_GRACE_S="5",
    )
    try:
        side.submit_text("slow.txt", "#sleep 2\n\nThe first document of the batch.\n")
        for i in range(5):
            side.submit_text(f"d{i}.md", f"# Document {i}\n\nAbout tide tables, part {i}.\n")
        with WorkerProcess(side.env, tmp_path / "worker.log", beat=True) as worker:
            wait_until(
                lambda: statuses(side.db_url)["slow.txt"] == DocStatus.PROCESSING,
                60,
                "the batch to start",
            )
            redis_server.stop()
            with pytest.raises(Unavailable):
                side.submit_text("while-down.md", "# Down\n\nUploaded while Redis was down.\n")
            assert statuses(side.db_url)["while-down.md"] == DocStatus.QUEUED
            time.sleep(2)
            redis_server.start()
            final = side.wait_done(timeout=150)
            assert set(final.values()) == {DocStatus.INDEXED}, final
            assert len(final) == 7
            docs = documents(side.db_url)
            assert all(d.chunks == d.chunk_count > 0 for d in docs.values())
            total = sum(d.chunks for d in docs.values())
            wait_until(lambda: side.index_count()[1] == total, 60, "the publish")
            assert "reconciler: re-enqueued" in worker.log()
    finally:
        side.close()


def test_a_poison_file_is_quarantined_and_others_keep_flowing(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, embedder: Embedder
) -> None:
    # Hard limit 30 s, soft 10 s: the "too slow" document runs out of time.
    side = _scaled(
        tmp_path, redis_server, postgres_url, embedder, DOCQA_INGEST_TASK_TIME_LIMIT_S="30"
    )
    try:
        # Crashes the sandboxed parser: the sandbox itself reports it, at the first attempt.
        side.submit_text("segfault.txt", "#segfault\n")
        # Kills the worker process itself, every time: Celery redelivers it
        # (reject_on_worker_lost) until ``process`` refuses a fourth start.
        side.submit_text("killer.txt", "#killworker\n")
        # Outlives the soft time limit while the parser child still works on it.
        side.submit_text("too-slow.txt", "#sleep 25\n\nNever finishes in time.\n")
        for i in range(3):
            side.submit_text(f"ok{i}.md", f"# Fine {i}\n\nA healthy document, number {i}.\n")
        with WorkerProcess(side.env, tmp_path / "worker.log", queues="ingest,index"):
            final = side.wait_done(timeout=150)
        docs = documents(side.db_url)
        assert final == {
            "segfault.txt": DocStatus.FAILED,
            "killer.txt": DocStatus.FAILED,
            "too-slow.txt": DocStatus.FAILED,
            "ok0.md": DocStatus.INDEXED,
            "ok1.md": DocStatus.INDEXED,
            "ok2.md": DocStatus.INDEXED,
        }
        assert docs["segfault.txt"].error == "parser crashed (signal 11)"
        assert docs["segfault.txt"].attempts == 1
        killer = docs["killer.txt"]
        assert killer.error is not None and killer.error.startswith("parser crashed")
        assert "quarantined" in killer.error
        assert killer.attempts == 3 and killer.chunks == 0
        assert docs["too-slow.txt"].error == (
            "processing took longer than 10 s (the ingest task time limit)"
        )
        assert docs["too-slow.txt"].attempts == 1
        assert all(docs[f"ok{i}.md"].attempts == 1 for i in range(3))
        # The parser that was cut off mid-file was replaced: no document got another's text.
        for i in range(3):
            assert chunk_texts(side.db_url, f"ok{i}.md") == [
                f"# Fine {i}\n\nA healthy document, number {i}."
            ]
    finally:
        side.close()


def test_kill9_of_the_index_worker_holding_a_reindex_request_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, embedder: Embedder
) -> None:
    """Issue 12 defect 8: the index worker is killed while it runs a reindex. The broker
    holds that message until its visibility timeout (65 s); the request, recorded with the
    collection, is sent again as soon as an index worker starts."""
    side = _scaled(tmp_path, redis_server, postgres_url, embedder)
    try:
        # An up-to-date collection (built in-process): only the reindex makes a new version.
        doc = side.submit_text("tides.md", "# Tides\n\nHigh water comes twice a day.\n")
        assert side.service.process(doc).chunks > 0
        coll = side.service.collection_id("docs")
        side.service.publish(coll)
        version, count = side.index_count()
        held = dict(side.env, TEST_PUBLISH_SLEEP_S="120")
        first = WorkerProcess(held, tmp_path / "a.log", queues="index").start()
        try:
            side.queue.reindex(coll)
            wait_until(
                lambda: "docqa.publish_collection" in first.log(), 30, "the reindex to start"
            )
            first.kill9()
            killed = time.monotonic()
        finally:
            first.stop()
        assert side.index_count() == (version, count)

        with WorkerProcess(side.env, tmp_path / "b.log", queues="index"):
            wait_until(lambda: side.index_count()[0] != version, 60, "the reindex")
        assert time.monotonic() - killed < side.settings.broker_visibility_timeout_s
        assert side.index_count()[1] == count
        assert reindex_requests(side.service.db, requested_before=None) == []
    finally:
        side.close()
