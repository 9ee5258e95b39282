"""The metadata DB against both real SQLite and real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, inspect, select

from qa.errors import ConfigError, InvalidInput, NotFound
from qa.store.catalog import (
    ChunkRow,
    PageContent,
    chunk_id,
    chunk_positions,
    delete_document,
    delete_documents,
    ensure_collection,
    get_collection,
    get_collection_by_id,
    index_material,
    list_collections,
    list_documents,
    new_document_id,
    page_texts,
    replace_document_content,
    validate_collection_name,
)
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, DocStatus, Document, Embedding, Job, PageText
from qa.store.jobs import change_job, count_jobs, job_ids, job_state, list_jobs


def _rows(n: int) -> list[ChunkRow]:
    return [
        ChunkRow(i, f"chunk {i} text", 1, 1, i * 10, i * 10 + 8, ("H",), 3, f"chunk {i} text")
        for i in range(n)
    ]


def _doc(db: Database, name: str = "a.pdf", sha: str = "a" * 64) -> str:
    with db.session() as s:
        coll = ensure_collection(s, "handbook")
        did = new_document_id()
        s.add(Document(id=did, collection_id=coll.id, sha256=sha, original_name=name, size_bytes=3))
        s.commit()
    return did


def test_migrations_create_schema_and_are_idempotent(db: Database) -> None:
    Database(db.url).dispose()  # second start: migration is a no-op
    tables = set(inspect(db.engine).get_table_names())
    assert {"collections", "documents", "pages", "chunks", "embeddings", "jobs"} <= tables
    assert "alembic_version" in tables


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_bad_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Database("not a url at all")


def test_content_write_replaces_partial_rows_and_counts(db: Database) -> None:
    did = _doc(db)
    vecs = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    with db.session() as s:
        doc = s.get(Document, did)
        assert doc is not None
        replace_document_content(s, doc, [PageContent(1, "page one")], _rows(3), vecs, "m")
        s.commit()
    # writing again (a redelivered task) replaces instead of duplicating
    with db.session() as s:
        doc = s.get(Document, did)
        assert doc is not None
        replace_document_content(s, doc, [PageContent(1, "page one")], _rows(3), vecs, "m")
        doc.status = DocStatus.INDEXED
        s.commit()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Chunk)) == 3
        assert s.scalar(select(func.count()).select_from(Embedding)) == 3
        assert s.scalar(select(func.count()).select_from(PageText)) == 1
        material = index_material(s, get_collection(s, "handbook").id, 4, "m")
    assert material.ids.dtype == np.int64 and len(material.ids) == 3
    np.testing.assert_allclose(
        material.vectors[np.argsort(material.ids)],
        vecs[np.argsort([chunk_id(did, r.ordinal, r.text) for r in _rows(3)])],
    )
    assert material.term_lists[0][0] == "chunk"


def test_index_material_refuses_vectors_of_another_model(db: Database) -> None:
    did = _doc(db)
    with db.session() as s:
        doc = s.get(Document, did)
        assert doc is not None
        replace_document_content(s, doc, [], _rows(1), np.ones((1, 4), np.float32), "old-model")
        s.commit()
        with pytest.raises(InvalidInput, match="old-model"):
            index_material(s, doc.collection_id, 4, "new-model")


def test_delete_document_removes_chunks_embeddings_and_pages(db: Database) -> None:
    did = _doc(db)
    with db.session() as s:
        doc = s.get(Document, did)
        assert doc is not None
        replace_document_content(
            s, doc, [PageContent(1, "p")], _rows(2), np.ones((2, 4), np.float32), "m"
        )
        s.commit()
        delete_document(s, doc)
        s.commit()
        for model in (Chunk, Embedding, PageText, Document):
            assert s.scalar(select(func.count()).select_from(model)) == 0


def test_deleting_documents_takes_the_collection_summaries_naming_them(db: Database) -> None:
    """Quoted or listed as skipped, a deleted document's name is in the summary: it goes."""
    quoted, skipped, other = (_doc(db, f"{n}.md", n[0] * 64) for n in ("q", "s", "o"))

    def summary(key: str, doc_id: str) -> dict[str, object]:
        return {"result": {key: [{"document_id": doc_id, "document_name": "x"}]}}

    with db.session() as s:
        coll_id = get_collection(s, "handbook").id
        jobs = {"quotes": summary("documents", quoted), "skips": summary("skipped", skipped)}
        jobs["other"] = summary("documents", other)
        s.add_all(
            Job(id=i, kind="summary", status="done", collection_id=coll_id, payload=p)
            for i, p in jobs.items()
        )
        s.commit()
        docs = [s.get(Document, quoted), s.get(Document, skipped)]
        assert delete_documents(s, [d for d in docs if d is not None]) == {"q" * 64, "s" * 64}
        s.commit()
        assert s.scalars(select(Job.id)).all() == ["other"]


def test_collections_listing_and_validation(db: Database) -> None:
    _doc(db)
    with db.session() as s:
        [(coll, ndocs, nchunks)] = list_collections(s)
        assert (coll.name, ndocs, nchunks) == ("handbook", 1, 0)
        assert ensure_collection(s, "handbook").id == coll.id
        assert len(list_documents(s, coll.id, "queued")) == 1
        with pytest.raises(InvalidInput):
            list_documents(s, coll.id, "bogus")
        with pytest.raises(NotFound):
            get_collection(s, "nope")
    for bad in ("", "../etc", "a/b", "x" * 101, "\x00name", " "):
        with pytest.raises(InvalidInput):
            validate_collection_name(bad)
    assert validate_collection_name(" HR docs 2024 ") == "HR docs 2024"
    assert validate_collection_name("研发文档") == "研发文档"


def test_document_ids_are_random_and_chunk_ids_derive_from_content() -> None:
    assert len({new_document_id() for _ in range(100)}) == 100
    assert len(new_document_id()) == 40
    cid = chunk_id("d", 0, "text")
    assert cid == chunk_id("d", 0, "text") and 0 <= cid < 2**63
    assert cid != chunk_id("d", 1, "text")


def test_a_documents_text_reads_back_in_reading_order(db: Database) -> None:
    """What a summary reads: page texts, chunk positions by ordinal, the collection by id."""
    did = _doc(db)
    pages = [PageContent(1, "page one"), PageContent(2, "page two")]
    with db.session() as s:
        doc = s.get(Document, did)
        assert doc is not None
        rows = list(reversed(_rows(3)))  # written out of order on purpose
        replace_document_content(s, doc, pages, rows, np.ones((3, 4), np.float32), "m")
        s.commit()
        assert page_texts(s, did) == {p.number: p.text for p in pages}
        assert chunk_positions(s, did) == [(1, 0, 12), (1, 10, 12), (1, 20, 12)]
        assert get_collection_by_id(s, doc.collection_id).name == "handbook"
        with pytest.raises(NotFound):
            get_collection_by_id(s, 999_999)


def test_a_job_changes_state_only_from_the_statuses_given(db: Database) -> None:
    """Conditional updates: of a runner and a canceller, whoever comes first wins."""
    with db.session() as s:
        s.add_all(Job(id=i, kind="summary", status="queued", payload={}) for i in ("a", "b"))
        s.commit()
        assert change_job(s, "a", ["queued", "running"], kind="summary", status="running")
        assert not change_job(s, "a", ["queued"], status="cancelled")  # already running
        assert not change_job(s, "b", ["queued"], kind="other", status="running")
        assert change_job(s, "a", ["running"], cancel_requested=True)
        s.commit()
        assert job_state(s, "a") == ("running", True) and job_state(s, "zz") is None
        assert count_jobs(s, "summary", None, ["queued", "running"]) == 2
        assert job_ids(s, "summary", ["queued"]) == ["b"]
        assert len(list_jobs(s, "summary", None, 1)) == 1
