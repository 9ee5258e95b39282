"""The scaled mode: uploads stored by the web side, processed by real ``docqa worker``
processes over the real Redis, metadata in the real PostgreSQL.

Redis: the shared server, database 11 (flushed before each test; override with
``DOCQA_TEST_REDIS_URL_INGEST``). Fault tests with their own Redis: ``test_faults.py``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ingest.factory import build_ingest_service
from qa.errors import Unavailable
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.models import DocStatus
from tests.conftest import SAMPLES, corpus_path
from tests.worker.celery_support import (
    REPO,
    DocRow,
    RedisServer,
    Scaled,
    WorkerProcess,
    documents,
    free_port,
    private_redis_db,
    settings_overrides,
    statuses,
    wait_until,
    worker_env,
)
from worker.celery_queue import CeleryIngestQueue
from worker.embedded import EmbeddedIngestQueue

REDIS_URL = os.environ.get("DOCQA_TEST_REDIS_URL_INGEST", "redis://127.0.0.1:6379/11")


@pytest.fixture
def broker_url() -> Iterator[str]:
    yield from private_redis_db(REDIS_URL)


@pytest.fixture
def scaled(
    tmp_path: Path, broker_url: str, postgres_url: str, embedder: Embedder
) -> Iterator[Scaled]:
    env = worker_env(tmp_path / "var", broker_url, postgres_url)
    side = Scaled(env, embedder)
    yield side
    side.close()


def test_uploads_are_processed_by_a_worker_and_published(scaled: Scaled, tmp_path: Path) -> None:
    for path in sorted(SAMPLES.glob("*.*")):
        scaled.submit_file(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("folder/one.md", "# One\n\nThe first file talks about lighthouses.\n")
        zf.writestr("folder/broken.pdf", b"%PDF-1.7\n1 0 obj <<")
    buf.seek(0)
    uploads = scaled.queue.submit("docs", buf, "folder.zip")
    assert [(u.name, u.status) for u in uploads] == [
        ("folder.zip/folder/broken.pdf", DocStatus.QUEUED),
        ("folder.zip/folder/one.md", DocStatus.QUEUED),
    ]
    # The same bytes again while the first copy waits: found, not scheduled a second time.
    (again,) = scaled.queue.submit("docs", io.BytesIO(buf.getvalue()), "folder-again.zip")[:1]
    assert (again.status, again.created) == (DocStatus.QUEUED, False)
    assert set(statuses(scaled.db_url).values()) == {DocStatus.QUEUED}
    assert scaled.queue.depth() == 6
    assert redis.Redis.from_url(scaled.settings.broker_url or "").llen("ingest") == 6

    with WorkerProcess(scaled.env, tmp_path / "worker.log", queues="ingest,index"):
        final = scaled.wait_done()
        assert final == {
            "employee-handbook.md": DocStatus.INDEXED,
            "travel-and-expenses.pdf": DocStatus.INDEXED,
            "it-security-guidelines.docx": DocStatus.INDEXED,
            "员工福利指南.md": DocStatus.INDEXED,
            "folder.zip/folder/one.md": DocStatus.INDEXED,
            "folder.zip/folder/broken.pdf": DocStatus.FAILED,
        }
        docs = documents(scaled.db_url)
        total = sum(d.chunks for d in docs.values())
        assert all(d.chunks == d.chunk_count and d.attempts == 1 for d in docs.values())
        # The last document's publish request runs after its commit: the index is complete.
        wait_until(lambda: scaled.index_count()[1] == total, 30, "the publish")
        assert scaled.queue.depth() == 0

        # An explicit retry goes through the queue too (and parses again).
        assert scaled.service.pending() == []
        failed_id = next(
            u.document_id for u in uploads if u.name.endswith("broken.pdf") and u.document_id
        )
        scaled.queue.retry([failed_id])
        wait_until(
            lambda: (
                documents(scaled.db_url)["folder.zip/folder/broken.pdf"].attempts == 2
                and statuses(scaled.db_url)["folder.zip/folder/broken.pdf"] == DocStatus.FAILED
            ),
            60,
            "the retried document to fail again",
        )

        # An explicit reindex is never coalesced away: a new version, same content.
        version, _ = scaled.index_count()
        coll_id = scaled.service.collection_id("docs")
        scaled.queue.reindex(coll_id)
        wait_until(lambda: scaled.index_count()[0] != version, 30, "the reindex")
        assert scaled.index_count()[1] == total


def test_an_enqueue_with_the_broker_down_is_503_and_keeps_the_upload(
    tmp_path: Path, postgres_url: str, embedder: Embedder
) -> None:
    """Nothing listens on the broker's port: ``submit`` fails fast with ``Unavailable``, and
    the documents it stored stay ``queued`` for the reconciler."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    side = Scaled(worker_env(tmp_path / "var", dead, postgres_url), embedder)
    try:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("a.md", "# A\n\nAbout anchors.\n")
            zf.writestr("b.md", "# B\n\nAbout buoys.\n")
        buf.seek(0)
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            side.queue.submit("docs", buf, "two.zip")
        assert time.monotonic() - started < 10
        assert "stored" in str(caught.value) and "unreachable" in str(caught.value)
        assert statuses(side.db_url) == {"two.zip/a.md": "queued", "two.zip/b.md": "queued"}
        assert all(side.service.blobs.path_for(s).is_file() for s in _shas(side))
        with pytest.raises(Unavailable):
            side.queue.reindex(side.service.collection_id("docs"))
    finally:
        side.close()


def _shas(side: Scaled) -> list[str]:
    from sqlalchemy import select

    from qa.store.db.models import Document

    with side.service.db.session() as session:
        return list(session.scalars(select(Document.sha256)).all())


def test_serve_with_a_broker_enqueues_and_answers_503_while_it_is_down(
    tmp_path: Path, postgres_url: str
) -> None:
    """``docqa serve``'s app with DOCQA_BROKER_URL set: the upload API answers 202 and the
    document waits ``queued`` for a worker (none runs here). While Redis is down the same
    upload answers 503 and its row is kept; once Redis is back, uploads go through again."""
    from cli.serve import build_app
    from web.extensions import WebServices
    from worker.celery_app import app as process_app

    # ``configure`` sets the process-wide app's URL, but connection pools it opened before
    # (for an earlier test's broker) would stay: drop them, as Celery does after a fork.
    process_app._after_fork()
    with RedisServer(tmp_path / "redis") as broker:
        # The rate limits count on the broker's Redis (the default); while it is down they
        # count in this process (web.ratelimit.LimitStore), so the upload is still tried.
        env = worker_env(tmp_path / "var", broker.url(), postgres_url)
        app = build_app(Settings(**settings_overrides(env)))
        svc: WebServices = app.extensions["docqa"]
        try:
            assert isinstance(svc.ingest, CeleryIngestQueue)
            admin = svc.accounts.create_user("ops", "correct horse battery", "admin", "Ops")
            token, _ = svc.accounts.create_token(admin.user_id, "test")
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            created = client.post("/api/v1/collections", json={"name": "docs"}, headers=headers)
            cid = created.get_json()["id"]

            def upload(name: str, body: bytes) -> tuple[int, dict[str, Any]]:
                resp = client.post(
                    f"/api/v1/collections/{cid}/documents",
                    data={"file": (io.BytesIO(body), name)},
                    headers=headers,
                    content_type="multipart/form-data",
                )
                return resp.status_code, resp.get_json()

            status, body = upload("a.md", b"# A\n\nAbout anchors.\n")
            assert status == 202, body
            db_url = svc.settings.db_url
            assert statuses(db_url) == {"a.md": "queued"}
            assert redis.Redis.from_url(broker.url()).llen("ingest") == 1  # the message waits

            broker.stop()
            started = time.monotonic()
            status, body = upload("b.md", b"# B\n\nAbout buoys.\n")
            assert status == 503, body
            assert time.monotonic() - started < 10
            assert body["error"]["code"] == "unavailable"
            assert "stored" in body["error"]["message"]
            assert statuses(db_url) == {"a.md": "queued", "b.md": "queued"}

            broker.start()  # empty: the message of a.md is gone; the reconciler resends
            status, body = upload("c.md", b"# C\n\nAbout currents.\n")
            assert status == 202, body
            assert redis.Redis.from_url(broker.url()).llen("ingest") == 1
        finally:
            assert svc.ingest is not None
            svc.ingest.close()
            svc.db.dispose()
            process_app._after_fork()


def test_docqa_worker_needs_a_broker_and_one_index_writer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "--data-dir", str(tmp_path), "worker", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**env, **extra},
        )

    no_broker = run()
    assert no_broker.returncode == 1
    assert "DOCQA_BROKER_URL" in no_broker.stderr
    two_writers = run("--queues", "ingest,index", "--concurrency", "2", DOCQA_BROKER_URL=REDIS_URL)
    assert two_writers.returncode == 1
    assert "exactly one writer" in two_writers.stderr
    unknown = run("--queues", "ingest,bogus", DOCQA_BROKER_URL=REDIS_URL)
    assert unknown.returncode == 1 and "bogus" in unknown.stderr
    # A summary's generations go to "generate": one process consuming both would wait for
    # itself (with DOCQA_GENERATION=local a summary runs its own model, so that is allowed).
    both = run("--queues", "generate,summarize", DOCQA_BROKER_URL=REDIS_URL)
    assert both.returncode == 1 and "separate workers" in both.stderr


# -- the same final state as the embedded mode, on a slice of the shared corpus -----------


#: ~200 files, about a minute of ingest work on 2 cores
CORPUS_SLICE = (("office", "python-docx"), ("office", "python-pptx"), ("pdf", "pypdf-resources"))
#: the embedded mode has no per-task time limit: give the workers a production-like one, not
#: the fault tests' 20 s, which a 146-chunk file can exceed on a slow shared machine
PRODUCTION_LIMITS = {
    "DOCQA_BROKER_VISIBILITY_TIMEOUT_S": "1200",
    "DOCQA_INGEST_TASK_TIME_LIMIT_S": "900",
}


@pytest.mark.eval
def test_two_workers_reach_the_embedded_final_state_on_a_corpus_slice(
    scaled: Scaled, tmp_path: Path, embedder: Embedder
) -> None:
    """The deployment the README describes, on one machine: an ingest worker with two
    processes and the single index writer. Per file: the same status, error and chunks."""
    files: dict[str, Path] = {}
    for parts in CORPUS_SLICE:
        folder = corpus_path(*parts)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            files[f"{folder.name}/{path.relative_to(folder).as_posix()}"] = path

    # The embedded mode (thread pool, SQLite), as `docqa serve` runs without a broker.
    embedded_settings = Settings(data_dir=tmp_path / "embedded")
    embedded = EmbeddedIngestQueue(build_ingest_service(embedded_settings, embedder=embedder))
    try:
        started = time.monotonic()
        for name, path in files.items():
            with path.open("rb") as f:
                embedded.submit("docs", f, name)
        assert embedded.wait_idle(600)
        embedded_s = time.monotonic() - started
    finally:
        embedded.close()
    expected = documents(embedded_settings.db_url)

    started = time.monotonic()
    for name, path in files.items():
        scaled.submit_file(path, name=name)
    log_dir = tmp_path / "logs"
    env = {**scaled.env, **PRODUCTION_LIMITS}
    with (
        WorkerProcess(env, log_dir / "ingest.log", queues="ingest", concurrency=2),
        WorkerProcess(env, log_dir / "index.log", queues="index"),
    ):
        scaled.wait_done(timeout=600)
        got = documents(scaled.db_url)
        total = sum(d.chunks for d in got.values())
        wait_until(lambda: scaled.index_count()[1] == total, 60, "the final publish")
        scaled_s = time.monotonic() - started

    def state(rows: dict[str, DocRow]) -> dict[str, tuple[object, ...]]:
        return {n: (r.status, r.chunk_count, r.chunks, r.error) for n, r in rows.items()}

    assert state(got) == state(expected)
    by_status = Counter(r.status for r in got.values())
    print(
        f"\n{len(files)} files, {len(got)} documents {dict(by_status)}, {total} chunks:"
        f" embedded {embedded_s:.0f} s, scaled (2 ingest processes) {scaled_s:.0f} s"
    )


def test_a_synced_folder_is_scanned_by_beat_on_a_worker(scaled: Scaled, tmp_path: Path) -> None:
    """Scaled mode: Celery beat sends ``docqa.folder_sync``, a worker scans the folder and
    sends its files on as ingest tasks; the console's "scan now" goes the same way."""
    from qa.library.sync_sources import SyncSources

    share = tmp_path / "share"
    share.mkdir()
    settled = time.time() - 60
    for name, text in (
        ("one.md", "# One\n\nOwls nest in the bell tower.\n"),
        ("two.md", "# Two\n\nBats sleep in the crypt.\n"),
    ):
        (share / name).write_text(text)
        os.utime(share / name, (settled, settled))
    source = SyncSources(scaled.service.db).add(str(share), "docs", interval_s=60)
    env = {**scaled.env, "DOCQA_SYNC_CHECK_S": "1", "DOCQA_SYNC_SETTLE_S": "1"}
    with WorkerProcess(env, tmp_path / "worker.log", queues="ingest,index", beat=True):
        wait_until(
            lambda: (
                statuses(scaled.db_url)
                == {"share/one.md": DocStatus.INDEXED, "share/two.md": DocStatus.INDEXED}
            ),
            120,
            "beat's scan of the synced folder",
        )
        (share / "three.md").write_text("# Three\n\nSwifts circle the spire.\n")
        os.utime(share / "three.md", (settled, settled))
        scaled.queue.sync_now(source.id)
        wait_until(
            lambda: statuses(scaled.db_url).get("share/three.md") == DocStatus.INDEXED,
            120,
            "the scan asked for now",
        )
    view = SyncSources(scaled.service.db).get(source.id)
    assert view.last_status == "ok" and not view.scanning
