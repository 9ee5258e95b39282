"""The embedded ingest queue of ``docqa serve``: uploads stored before ``submit`` returns,
processed in the background, published once per batch, and never lost across restarts."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.factory import build_ingest_service
from qa.retrieval.embedder import Embedder
from qa.retrieval.index_store import IndexStore
from qa.settings import Settings
from qa.store.catalog import get_collection, list_documents
from qa.store.db.models import DocStatus, Document
from tests.conftest import SAMPLES
from worker.embedded import EmbeddedIngestQueue


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


@pytest.fixture
def queue(settings: Settings, embedder: Embedder) -> Iterator[EmbeddedIngestQueue]:
    q = EmbeddedIngestQueue(build_ingest_service(settings, embedder=embedder))
    q.start()
    yield q
    q.close()


def _statuses(q: EmbeddedIngestQueue, collection: str) -> dict[str, str]:
    with q.service.db.session() as session:
        coll = get_collection(session, collection)
        return {d.original_name: d.status for d in list_documents(session, coll.id)}


def test_upload_is_registered_then_indexed_and_published(
    queue: EmbeddedIngestQueue, settings: Settings
) -> None:
    data = (SAMPLES / "employee-handbook.md").read_bytes()
    uploads = queue.submit("docs", io.BytesIO(data), "handbook.md")
    assert [(u.name, u.status, u.created) for u in uploads] == [("handbook.md", "queued", True)]
    assert queue.wait_idle(120)
    assert _statuses(queue, "docs") == {"handbook.md": DocStatus.INDEXED}
    with queue.service.db.session() as session:
        key = get_collection(session, "docs").index_key
    assert IndexStore(settings.index_dir).current_version(key) is not None


def test_same_bytes_again_is_a_duplicate(queue: EmbeddedIngestQueue) -> None:
    data = (SAMPLES / "employee-handbook.md").read_bytes()
    queue.submit("docs", io.BytesIO(data), "a.md")
    assert queue.wait_idle(120)
    again = queue.submit("docs", io.BytesIO(data), "b.md")
    assert [(u.status, u.created) for u in again] == [(DocStatus.INDEXED, False)]


def test_zip_upload_becomes_its_members(queue: EmbeddedIngestQueue) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("folder/one.md", "# One\n\nThe first file talks about lighthouses.\n")
        zf.writestr("folder/two.txt", "The second file talks about harbours and tides.\n")
        zf.writestr("folder/broken.pdf", b"%PDF-1.7\n1 0 obj <<")
    buf.seek(0)
    uploads = queue.submit("docs", buf, "folder.zip")
    assert sorted(u.name for u in uploads) == [
        "folder.zip/folder/broken.pdf",
        "folder.zip/folder/one.md",
        "folder.zip/folder/two.txt",
    ]
    assert queue.wait_idle(120)
    statuses = _statuses(queue, "docs")
    assert statuses["folder.zip/folder/one.md"] == DocStatus.INDEXED
    assert statuses["folder.zip/folder/two.txt"] == DocStatus.INDEXED
    assert statuses["folder.zip/folder/broken.pdf"] == DocStatus.FAILED


def test_hostile_zip_is_refused_with_a_reason(queue: EmbeddedIngestQueue) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.txt", b"0" * (50 * 1024 * 1024))  # ratio far above the limit
    buf.seek(0)
    uploads = queue.submit("docs", buf, "bomb.zip")
    assert len(uploads) == 1
    assert uploads[0].status == DocStatus.FAILED
    assert uploads[0].document_id is None
    assert uploads[0].error and "zip" in uploads[0].error


def test_accepted_uploads_survive_a_stop(settings: Settings, embedder: Embedder) -> None:
    """Close with work still queued: the rows stay ``queued``; the next start finishes them."""
    first = EmbeddedIngestQueue(build_ingest_service(settings, embedder=embedder))
    # Stop the pool before anything runs, as a crash right after the upload would.
    first._pool.shutdown(wait=True)
    first._closed = True
    for path in sorted(SAMPLES.glob("*.md")):
        with path.open("rb") as f:
            first.submit("docs", f, path.name)
    first.close()
    with first.service.db.session() as session:
        coll = get_collection(session, "docs")
        assert {d.status for d in list_documents(session, coll.id)} == {DocStatus.QUEUED}

    second = EmbeddedIngestQueue(build_ingest_service(settings, embedder=embedder))
    try:
        assert second.start() == 2
        assert second.wait_idle(120)
        assert set(_statuses(second, "docs").values()) == {DocStatus.INDEXED}
    finally:
        second.close()


def test_retry_processes_a_failed_document_again(queue: EmbeddedIngestQueue) -> None:
    uploads = queue.submit("docs", io.BytesIO(b"%PDF-1.7\n1 0 obj <<"), "broken.pdf")
    assert queue.wait_idle(120)
    doc_id = uploads[0].document_id
    assert doc_id is not None
    with queue.service.db.session() as session:
        doc = session.get(Document, doc_id)
        assert doc is not None and doc.status == DocStatus.FAILED
        attempts = doc.attempts
    queue.retry([doc_id])
    assert queue.wait_idle(120)
    with queue.service.db.session() as session:
        doc = session.get(Document, doc_id)
        assert doc is not None
        assert doc.status == DocStatus.FAILED
        assert doc.attempts == attempts + 1


def test_the_uploaded_name_decides_markdown_vs_text(queue: EmbeddedIngestQueue) -> None:
    """Blobs have no suffix; the client's name still breaks the text-kind tie."""
    body = b"Parking is free for employees on level 2 of the garage.\n"
    queue.submit("docs", io.BytesIO(body), "parking.md")
    queue.submit("docs", io.BytesIO(body + b"Visitors use level 1.\n"), "parking.txt")
    assert queue.wait_idle(120)
    with queue.service.db.session() as session:
        coll = get_collection(session, "docs")
        kinds = {d.original_name: d.detected_type for d in list_documents(session, coll.id)}
    assert kinds == {"parking.md": "markdown", "parking.txt": "text"}
