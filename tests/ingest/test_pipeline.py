"""The ingest pipeline end to end: real sandbox, real model, real DB (SQLite + PostgreSQL)."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ingest.chunker import ChunkDraft, locate
from ingest.document import Page
from ingest.pipeline import IngestService, Outcome
from ingest.runner import delete_collection, delete_documents, reindex_collections, run_ingest
from qa.errors import IndexUnavailable
from qa.retrieval.index_store import IndexReader
from qa.retrieval.lexical import ANALYZER_VERSION, bm25_terms
from qa.store.catalog import get_collection
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, DocStatus, Document, Embedding, PageText
from tests.conftest import SAMPLES


def _counts(db: Database) -> tuple[int, int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Document)) or 0,
            s.scalar(select(func.count()).select_from(Chunk)) or 0,
            s.scalar(select(func.count()).select_from(Embedding)) or 0,
        )


def test_samples_are_indexed_with_pages_offsets_and_a_published_index(
    service: IngestService, db: Database
) -> None:
    report = run_ingest(service, [SAMPLES], "handbook")
    outcomes = {r.name.split("/")[-1]: r.outcome for r in report.results}
    assert outcomes == {
        "employee-handbook.md": Outcome.INDEXED,
        "it-security-guidelines.docx": Outcome.INDEXED,
        "travel-and-expenses.pdf": Outcome.INDEXED,
        "员工福利指南.md": Outcome.INDEXED,
    }
    ndocs, nchunks, nvecs = _counts(db)
    assert ndocs == 4 and nchunks == nvecs == report.chunks > 8

    with db.session() as s:
        pdf = s.scalar(select(Document).where(Document.original_name.like("%.pdf")))
        assert pdf is not None and pdf.detected_type == "pdf" and pdf.page_count == 9
        pages = {
            p.number: Page(p.number, p.text)
            for p in s.scalars(select(PageText).where(PageText.document_id == pdf.id))
        }
        chunks = s.scalars(select(Chunk).where(Chunk.document_id == pdf.id)).all()
        coll = get_collection(s, "handbook")
    # Every stored chunk maps back to the stored page text through its page span + offsets.
    hotel = [c for c in chunks if "EUR 160" in c.text]
    assert hotel and all(c.page_start == c.page_end == 4 for c in hotel)
    for c in chunks:
        draft = ChunkDraft(
            c.ordinal,
            c.text,
            c.page_start,
            c.page_end,
            c.char_start,
            c.char_end,
            tuple(c.heading_path),
            c.token_count,
        )
        assert locate([pages[n] for n in sorted(pages)], draft) == c.text

    index = IndexReader(service.indexes).get(coll.index_key, expected_count=nchunks)
    assert index.manifest["count"] == nchunks
    query = service.embedder.embed_query("How much is the hotel limit in London?")
    best_id, _ = index.search_dense(query, 1)[0]
    with db.session() as s:
        best = s.get(Chunk, best_id)
        assert best is not None and "EUR 220" in best.text
    assert index.manifest["analyzer"] == ANALYZER_VERSION
    # the same chunk for the Simplified question and its Traditional spelling; the stored
    # text stays as the document wrote it
    for question in ("带薪年假有几天？", "帶薪年假有幾天？"):
        top_id, _ = index.search_lexical(bm25_terms(question), 3)[0]
        with db.session() as s:
            top = s.get(Chunk, top_id)
            assert top is not None and "十五天带薪年假" in top.text, question


def test_ingesting_the_same_content_twice_creates_nothing_new(
    service: IngestService, db: Database
) -> None:
    run_ingest(service, [SAMPLES], "handbook")
    before = _counts(db)
    again = run_ingest(service, [SAMPLES], "handbook")
    assert Counter(r.outcome for r in again.results) == {Outcome.DUPLICATE: 4}
    assert _counts(db) == before


def test_changed_file_with_the_same_name_replaces_the_old_chunks(
    service: IngestService, db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    note = folder / "policy.md"
    note.write_text("# Policy\n\nThe parking fee is five euros per day.\n")
    run_ingest(service, [folder], "c")
    note.write_text("# Policy\n\nThe parking fee is seven euros per day, from March.\n")
    report = run_ingest(service, [folder], "c")
    assert report.replaced == 1
    with db.session() as s:
        docs = s.scalars(select(Document)).all()
        texts = " ".join(s.scalars(select(Chunk.text)).all())
    assert len(docs) == 1 and "seven euros" in texts and "five euros" not in texts


def test_hostile_names_are_only_displayed(service: IngestService, tmp_path: Path) -> None:
    sub = service.submit_stream("c", io.BytesIO(b"plain text body"), "../../etc/evil\x00.txt")
    assert sub.name == "etc/evil.txt"
    result = service.process(sub.document_id)
    assert result.outcome == Outcome.INDEXED
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")}
    assert written <= {"var", "docqa.db", "docqa.db-wal", "docqa.db-shm"}
    assert not (tmp_path.parent / "etc").exists()


def test_bad_inputs_each_end_in_a_status_and_the_run_goes_on(
    service: IngestService, db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "page.pdf").write_text(
        "<html><body><h1>Not a PDF</h1><p>html named pdf</p></body></html>"
    )
    (folder / "animation.gif").write_bytes(b"GIF89a" + b"\0" * 64)
    (folder / "good.md").write_text("# Good\n\nA perfectly fine document about ferries.\n")
    with zipfile.ZipFile(folder / "bundle.zip", "w") as zf:
        zf.writestr("inner/a.txt", "First archived note about lighthouses.")
        zf.writestr("inner/b.md", "# B\n\nSecond archived note about harbours.")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.txt", b"\0" * (64 * 1024 * 1024))
    report = run_ingest(service, [folder, bomb, tmp_path / "missing.pdf"], "c")
    by_name = {r.name: r for r in report.results}
    assert by_name["in/good.md"].outcome == Outcome.INDEXED
    assert by_name["in/page.pdf"].outcome == Outcome.INDEXED  # sniffed as HTML by content
    assert by_name["in/bundle.zip/inner/a.txt"].outcome == Outcome.INDEXED
    assert by_name["in/bundle.zip/inner/b.md"].outcome == Outcome.INDEXED
    assert by_name["in/empty.txt"].outcome == Outcome.FAILED
    assert by_name["in/animation.gif"].reason is not None
    assert by_name["in/animation.gif"].reason.startswith("unsupported type")
    assert "zip bomb" in (by_name["bomb.zip"].reason or "")
    assert by_name[str(tmp_path / "missing.pdf")].reason == "no such file or folder"
    with db.session() as s:
        statuses = Counter(s.scalars(select(Document.status)).all())
    assert statuses == {DocStatus.INDEXED: 4, DocStatus.FAILED: 2}


def test_failed_documents_are_retried_only_when_asked(
    service: IngestService, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"")
    first = run_ingest(service, [bad], "c").results[0]
    second = run_ingest(service, [bad], "c").results[0]
    assert first.outcome == second.outcome == Outcome.FAILED and first.reason == second.reason
    retried = run_ingest(service, [bad], "c", retry_failed=True).results[0]
    assert retried.outcome == Outcome.FAILED


def test_interrupted_document_is_finished_by_the_next_run(
    service: IngestService, db: Database
) -> None:
    sub = service.submit_file("c", SAMPLES / "employee-handbook.md", "employee-handbook.md")
    with db.session() as s:  # as if a worker died mid-way
        doc = s.get(Document, sub.document_id)
        assert doc is not None
        doc.status = DocStatus.PROCESSING
        s.commit()
    report = run_ingest(service, [SAMPLES / "employee-handbook.md"], "c")
    assert [r.outcome for r in report.results] == [Outcome.INDEXED]
    assert _counts(db)[0] == 1


def test_delete_and_reindex(service: IngestService, db: Database) -> None:
    run_ingest(service, [SAMPLES], "handbook")
    with db.session() as s:
        doc = s.scalar(select(Document).where(Document.original_name.like("%.docx")))
        assert doc is not None
        doc_id, sha = doc.id, doc.sha256
        key = get_collection(s, "handbook").index_key
    assert delete_documents(service, [doc_id[:10]]) == [doc.original_name]
    assert not service.blobs.exists(sha)
    _, nchunks, _ = _counts(db)
    [pub] = reindex_collections(service, "handbook")
    assert pub.count == nchunks
    assert (
        IndexReader(service.indexes).get(key, expected_count=nchunks).manifest["count"] == nchunks
    )
    assert delete_collection(service, "handbook") == 3
    assert _counts(db) == (0, 0, 0)
    with pytest.raises(IndexUnavailable):
        IndexReader(service.indexes).get(key)
