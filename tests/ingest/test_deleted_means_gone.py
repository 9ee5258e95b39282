"""Deleted means gone (issue 12, deliverable 4): a deleted, replaced or collection-deleted
document leaves no original, row, index entry, page text or summary behind, an upload of
the same bytes cannot lose its original to a concurrent delete, failure reasons show no
server path, and ids are never handed out twice. Real sandbox, MiniLM, SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.pipeline import IngestService, Outcome
from ingest.runner import delete_collection, delete_documents
from qa.accounts.audit import GC, AuditLog
from qa.library.gc import collect_garbage, record_gc
from qa.retrieval.lexical import bm25_terms
from qa.store.blobstore import INCOMING_PREFIX
from qa.store.catalog import ensure_collection, get_document
from qa.store.db.engine import Database
from qa.store.db.models import Collection, DocStatus, Document, Job


def _ingest(service: IngestService, collection: str, name: str, text: str) -> Document:
    sub = service.submit_stream(collection, io.BytesIO(text.encode()), name)
    result = service.process(sub.document_id)
    assert result.outcome == Outcome.INDEXED, result.reason
    with service.db.session() as session:
        return get_document(session, sub.document_id)


def _text(marker: str) -> str:
    return (
        f"# Notes on {marker}\n\nThe {marker} procedure is reviewed every spring by the"
        f" facilities team. Questions about {marker} go to the help desk.\n"
    )


# -- defect 4: a replaced version left its original on disk ------------------------------


def test_a_replaced_version_and_a_deleted_collection_leave_no_original(
    service: IngestService,
) -> None:
    first = _ingest(service, "reports", "q3.md", _text("first draft"))
    second = _ingest(service, "reports", "q3.md", _text("final draft"))
    assert not service.blobs.exists(first.sha256), "the replaced version's original stays"
    assert service.blobs.exists(second.sha256)
    delete_collection(service, "reports")
    assert list(service.blobs) == []


def test_an_original_shared_by_a_live_document_stays(service: IngestService) -> None:
    here = _ingest(service, "one", "shared.md", _text("shared bytes"))
    there = _ingest(service, "two", "shared.md", _text("shared bytes"))
    assert here.sha256 == there.sha256
    delete_collection(service, "one")
    assert service.blobs.exists(there.sha256)
    delete_documents(service, [there.id])
    assert not service.blobs.exists(there.sha256)


# -- defect 5: a delete and an identical upload raced -------------------------------------


def test_a_delete_and_an_identical_upload_take_turns(
    service: IngestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete is held just before it removes the file, having found no reference
    (where the old code was when the upload wrote its row): the upload must wait for it
    and end with its original in place, every time."""
    text = _text("race condition")
    doc = _ingest(service, "race", "a.md", text)
    counted, go = threading.Event(), threading.Event()
    remove = service.blobs.delete

    def held_before_removing(sha256: str) -> bool:
        counted.set()
        assert go.wait(60)
        return remove(sha256)

    monkeypatch.setattr(service.blobs, "delete", held_before_removing)
    deleter = threading.Thread(target=delete_documents, args=(service, [doc.id]))
    deleter.start()
    assert counted.wait(60)
    submitted: list[str] = []
    uploader = threading.Thread(
        target=lambda: submitted.append(
            service.submit_stream("race", io.BytesIO(text.encode()), "b.md").document_id
        )
    )
    uploader.start()
    uploader.join(2.0)
    waited = uploader.is_alive()
    go.set()
    deleter.join(60)
    uploader.join(60)
    assert submitted, "the upload failed"
    result = service.process(submitted[0])
    assert result.outcome == Outcome.INDEXED, result.reason
    assert waited, "the upload did not wait for the delete holding the blob's lock"


# -- a failure reason never shows a server path -------------------------------------------


def test_a_failure_reason_shows_no_server_path(service: IngestService) -> None:
    sub = service.submit_stream("paths", io.BytesIO(_text("lost file").encode()), "x.md")
    with service.db.session() as session:
        sha = get_document(session, sub.document_id).sha256
    service.blobs.path_for(sha).unlink()  # what the race of defect 5 used to leave
    result = service.process(sub.document_id)
    assert result.outcome == Outcome.FAILED
    with service.db.session() as session:
        reason = get_document(session, sub.document_id).error or ""
    data_dir = str(service.settings.data_dir.resolve())
    assert reason and data_dir not in reason and "/blobs/" not in reason and sha not in reason


# -- ids are never reused -------------------------------------------------------------------


def test_collection_and_document_ids_are_never_reused(service: IngestService) -> None:
    with service.db.session() as session:
        ensure_collection(session, "keep")
        last = ensure_collection(session, "gone")
        session.commit()
        last_id = last.id
    doc = _ingest(service, "gone", "a.md", _text("reused id"))
    delete_collection(service, "gone")
    again = _ingest(service, "gone", "a.md", _text("reused id"))
    assert again.collection_id > last_id, "a deleted collection's id was handed out again"
    assert again.id != doc.id
    delete_documents(service, [again.id])
    assert _ingest(service, "gone", "a.md", _text("reused id")).id not in (doc.id, again.id)


# -- docqa gc ---------------------------------------------------------------------------------


def test_gc_removes_what_earlier_versions_and_crashes_left(service: IngestService) -> None:
    live = _ingest(service, "live", "kept.md", _text("still here"))
    blobs, settings = service.blobs, service.settings
    # An original an earlier version left behind (written straight into the store).
    with blobs.staged(io.BytesIO(b"an orphaned original")) as staged:
        staged.place()
    orphan = staged.sha256
    old = time.time() - 2 * 3600
    stale_incoming = blobs.root / f"{INCOMING_PREFIX}crashed"
    fresh_incoming = blobs.root / f"{INCOMING_PREFIX}receiving"
    spool = settings.data_dir / "uploads"
    spool.mkdir(parents=True, exist_ok=True)
    stale_spool = spool / "tmp123.upload"
    for path in (stale_incoming, fresh_incoming, stale_spool):
        path.write_bytes(b"x" * 10)
    for path in (stale_incoming, stale_spool):
        os.utime(path, (old, old))
    (settings.index_dir / "c999" / "versions").mkdir(parents=True)
    (settings.index_dir / ".tmp-drop-c998-abc").mkdir(parents=True)
    live_key = f"c{live.collection_id}"
    service.publish(live.collection_id)

    report = collect_garbage(service.db, blobs, service.indexes, spool)
    record_gc(AuditLog(service.db), report, run_by="docqa gc")

    assert report.originals == 1 and not blobs.exists(orphan)
    assert blobs.exists(live.sha256)
    assert report.temp_files == 2 and not stale_incoming.exists() and not stale_spool.exists()
    assert fresh_incoming.exists(), "an upload in progress keeps its temp file"
    assert sorted(report.index_dirs) == [".tmp-drop-c998-abc", "c999"]
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [live_key]
    assert report.freed_bytes > 0 and report.missing_originals == 0
    (event,) = AuditLog(service.db).list(action=GC)
    assert event.details["originals"] == 1 and event.username == "docqa gc"
    assert collect_garbage(service.db, blobs, service.indexes, spool).freed_anything is False


# -- the hunt: nothing of a deleted document in any file under the data dir ----------------


def _hunt(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n!r}" for n in needles if n in data]
    return found


def _add_summaries(db: Database, doc: Document, marker: str) -> None:
    """A document summary of ``doc`` and a collection summary quoting it."""
    statement = {"text": f"The {marker} procedure is reviewed in spring.", "pages": [1]}
    own = {"document_id": doc.id, "statements": [statement]}
    quoting = {"statements": [statement], "documents": [own]}
    with db.session() as session:
        session.add_all(
            Job(
                id=f"{prefix}{doc.id[:30]}",
                kind="summary",
                status="done",
                collection_id=doc.collection_id,
                document_id=document_id,
                payload={"result": result},
            )
            for prefix, document_id, result in [("d", doc.id, own), ("c", None, quoting)]
        )
        session.commit()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_trace_of_deleted_documents_is_left_in_any_file(
    service: IngestService, tmp_path: Path
) -> None:
    """Deleted, replaced and collection-deleted documents, hunted for by their text in
    every file: the data dir and the SQLite database with its write-ahead log."""
    with service.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    markers = ["zorbulatedelete", "quintessarreplace", "flumoxcollection"]
    survivor = _ingest(service, "handbook", "survivor.md", _text("everyday routine"))
    deleted = _ingest(service, "handbook", "deleted.md", _text(markers[0]))
    _ingest(service, "handbook", "replaced.md", _text(markers[1]))
    dropped = _ingest(service, "archive", "old.md", _text(markers[2]))
    _add_summaries(service.db, deleted, markers[0])
    _add_summaries(service.db, dropped, markers[2])
    service.publish(survivor.collection_id)
    service.publish(dropped.collection_id)
    needles = [m.encode() for m in markers]
    needles += [t.encode() for m in markers for t in bm25_terms(m)]
    found = {hit.split(":")[0] for hit in _hunt(tmp_path, needles)}
    # The hunt can find: originals, BM25 vocabularies and the database (WAL or file).
    assert {"docqa.db", "docqa.db-wal"} & found, found
    assert any(f.startswith("var/blobs/") for f in found)
    assert any(f.endswith("bm25_vocab.json") for f in found)

    delete_documents(service, [deleted.id])  # publishes the collection again
    _ingest(service, "handbook", "replaced.md", _text("revised wording"))
    service.publish(survivor.collection_id)
    delete_collection(service, "archive")

    assert _hunt(tmp_path, needles) == []
    with service.db.session() as session:
        names = sorted(session.scalars(select(Document.original_name)).all())
        assert names == ["replaced.md", "survivor.md"]
        assert session.scalar(select(Collection.name)) == "handbook"
        assert session.scalar(select(Job.id)) is None
        assert {d.status for d in session.scalars(select(Document))} == {DocStatus.INDEXED}
