"""Collections, documents and chunks in the metadata DB: the operations services share.

Every function takes an open ``Session`` and leaves committing to the caller, so one
unit of work (e.g. "write all chunks and mark the document indexed") is one transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qa.errors import InvalidInput, NotFound
from qa.store.db.models import (
    Chunk,
    Collection,
    DocStatus,
    Document,
    Embedding,
    PageText,
    utcnow,
)
from qa.store.jobs import delete_jobs_citing

_COLLECTION_NAME = re.compile(r"^[\w][\w .\-]{0,99}$", re.UNICODE)


def new_document_id() -> str:
    """A fresh random id: never one a deleted document had (old chats may still name it)."""
    return secrets.token_hex(20)


def find_document(session: Session, collection_id: int, sha256: str) -> Document | None:
    """The collection's document with these bytes (at most one: unique)."""
    return session.scalar(
        select(Document).where(Document.collection_id == collection_id, Document.sha256 == sha256)
    )


def chunk_id(doc_id: str, ordinal: int, text: str) -> int:
    digest = hashlib.sha256(f"{doc_id}\0{ordinal}\0{text}".encode()).digest()
    # 63 bits: FAISS ids and SQL BIGINT are signed 64-bit.
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def validate_collection_name(name: str) -> str:
    name = name.strip()
    if not _COLLECTION_NAME.match(name):
        raise InvalidInput(
            "collection names are 1-100 letters, digits, spaces, '.', '-' or '_',"
            " starting with a letter or digit"
        )
    return name


def get_collection(session: Session, name: str) -> Collection:
    coll = session.scalar(select(Collection).where(Collection.name == name))
    if coll is None:
        raise NotFound(f"no collection named {name!r}")
    return coll


def get_collection_by_id(session: Session, collection_id: int) -> Collection:
    coll = session.get(Collection, collection_id)
    if coll is None:
        raise NotFound(f"no collection with id {collection_id}")
    return coll


def request_reindex(session: Session, collection_id: int) -> datetime:
    """Record that a collection's indexes are to be rebuilt; the request stays until a
    publish that started after it has finished (``reindex_done``)."""
    coll = get_collection_by_id(session, collection_id)
    coll.reindex_requested_at = utcnow()
    return coll.reindex_requested_at


def reindex_done(session: Session, collection_id: int, requested_at: datetime) -> None:
    """A publish that read ``requested_at`` before it started has finished: clear that
    request, not a newer one made meanwhile."""
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id, Collection.reindex_requested_at == requested_at)
        .values(reindex_requested_at=None)
    )


def ensure_collection(session: Session, name: str) -> Collection:
    name = validate_collection_name(name)
    coll = session.scalar(select(Collection).where(Collection.name == name))
    if coll is not None:
        return coll
    coll = Collection(name=name)
    session.add(coll)
    try:
        session.flush()
    except IntegrityError:  # another process created it first
        session.rollback()
        return get_collection(session, name)
    return coll


def list_collections(session: Session) -> list[tuple[Collection, int, int]]:
    """Collections with their document and chunk counts."""
    doc_counts: dict[int, int] = {
        cid: n
        for cid, n in session.execute(
            select(Document.collection_id, func.count()).group_by(Document.collection_id)
        )
    }
    chunk_counts: dict[int, int] = {
        cid: n
        for cid, n in session.execute(
            select(Chunk.collection_id, func.count()).group_by(Chunk.collection_id)
        )
    }
    colls = session.scalars(select(Collection).order_by(Collection.name)).all()
    return [(c, doc_counts.get(c.id, 0), chunk_counts.get(c.id, 0)) for c in colls]


def list_documents(
    session: Session, collection_id: int | None = None, status: str | None = None
) -> Sequence[Document]:
    q = select(Document).order_by(Document.original_name, Document.created_at)
    if collection_id is not None:
        q = q.where(Document.collection_id == collection_id)
    if status is not None:
        if status not in DocStatus.ALL:
            raise InvalidInput(f"unknown status {status!r}; one of {', '.join(DocStatus.ALL)}")
        q = q.where(Document.status == status)
    return session.scalars(q).all()


def get_document(session: Session, doc_id: str) -> Document:
    doc = session.get(Document, doc_id)
    if doc is None:
        raise NotFound(f"no document {doc_id!r}")
    return doc


def document_collections(session: Session, doc_ids: Sequence[str]) -> dict[str, int]:
    """document id -> collection id, for those of ``doc_ids`` that still exist."""
    if not doc_ids:
        return {}
    query = select(Document.id, Document.collection_id).where(Document.id.in_(set(doc_ids)))
    return {doc_id: coll_id for doc_id, coll_id in session.execute(query)}


def document_count(session: Session, collection_id: int, status: str) -> int:
    """Documents of a collection in one status."""
    q = select(func.count()).select_from(Document)
    q = q.where(Document.collection_id == collection_id, Document.status == status)
    return int(session.scalar(q) or 0)


def chunk_count(session: Session, collection_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.collection_id == collection_id)
        )
        or 0
    )


@dataclass(frozen=True)
class PageContent:
    """A page ready to be written: its text and, for an OCR'd page, its line boxes (each
    ``[start, end, left, top, right, bottom]``; None for a page read from a text layer)."""

    number: int
    text: str
    boxes: list[list[float]] | None = None


@dataclass(frozen=True)
class ChunkRow:
    """A chunk ready to be written: everything but the ids, which derive from content."""

    ordinal: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    heading_path: tuple[str, ...]
    token_count: int
    terms: str


def replace_document_content(
    session: Session,
    doc: Document,
    pages: Sequence[PageContent],
    chunks: Sequence[ChunkRow],
    vectors: np.ndarray,
    model_id: str,
) -> None:
    """Write pages, chunks and embeddings of ``doc``, replacing any earlier partial write."""
    if len(chunks) != len(vectors):
        raise InvalidInput(f"{len(chunks)} chunks but {len(vectors)} vectors")
    clear_document_content(session, doc.id)
    session.add_all(
        PageText(document_id=doc.id, number=p.number, text=p.text, boxes=p.boxes) for p in pages
    )
    vecs = np.ascontiguousarray(vectors, dtype="<f4")
    for row, vec in zip(chunks, vecs, strict=True):
        cid = chunk_id(doc.id, row.ordinal, row.text)
        session.add(
            Chunk(
                id=cid,
                document_id=doc.id,
                collection_id=doc.collection_id,
                ordinal=row.ordinal,
                text=row.text,
                page_start=row.page_start,
                page_end=row.page_end,
                char_start=row.char_start,
                char_end=row.char_end,
                heading_path=list(row.heading_path),
                token_count=row.token_count,
                terms=row.terms,
            )
        )
        session.add(
            Embedding(chunk_id=cid, model_id=model_id, dim=vecs.shape[1], vector=vec.tobytes())
        )
    doc.page_count = len(pages)
    doc.chunk_count = len(chunks)
    doc.ocr_pages = sum(p.boxes is not None for p in pages)


def clear_document_content(session: Session, doc_id: str) -> None:
    chunk_ids = select(Chunk.id).where(Chunk.document_id == doc_id)
    session.execute(delete(Embedding).where(Embedding.chunk_id.in_(chunk_ids)))
    session.execute(delete(Chunk).where(Chunk.document_id == doc_id))
    session.execute(delete(PageText).where(PageText.document_id == doc_id))


def delete_documents(session: Session, docs: Sequence[Document]) -> set[str]:
    """The documents' rows and everything derived from their text: pages, chunks, vectors,
    their summaries (their own by cascade, collection summaries quoting them here, read
    once per collection, not once per document). Returns their sha256s: the originals are
    released after the commit (``qa.store.blob_refs.after_delete``)."""
    by_collection: dict[int, list[str]] = {}
    for doc in docs:
        by_collection.setdefault(doc.collection_id, []).append(doc.id)
    for collection_id, doc_ids in by_collection.items():
        delete_jobs_citing(session, collection_id, doc_ids)
    for doc in docs:
        clear_document_content(session, doc.id)
        session.delete(doc)
    return {doc.sha256 for doc in docs}


def delete_document(session: Session, doc: Document) -> set[str]:
    """One document's rows (see ``delete_documents``)."""
    return delete_documents(session, [doc])


@dataclass(frozen=True)
class IndexMaterial:
    ids: np.ndarray  # int64 (n,)
    vectors: np.ndarray  # float32 (n, dim)
    term_lists: list[list[str]]
    model_id: str


def index_material(session: Session, collection_id: int, dim: int, model_id: str) -> IndexMaterial:
    """Everything the index writer needs for one collection, read from the source of truth."""
    rows = session.execute(
        select(Chunk.id, Chunk.terms, Embedding.vector, Embedding.model_id)
        .join(Embedding, Embedding.chunk_id == Chunk.id)
        .where(Chunk.collection_id == collection_id)
        .order_by(Chunk.id)
    ).all()
    stale = {r[3] for r in rows if r[3] != model_id}
    if stale:
        raise InvalidInput(
            f"collection has vectors from {sorted(stale)}, not {model_id}: re-embed it"
            "; re-ingest it with the configured embedding model"
        )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.empty((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        vectors[i] = np.frombuffer(r[2], dtype="<f4")
    return IndexMaterial(ids, vectors, [r[1].split() for r in rows], model_id)


def chunk_texts(
    session: Session, collection_id: int, *, batch: int = 1000
) -> Iterator[list[tuple[int, str]]]:
    """``(chunk id, text)`` of every chunk of the collection, ``batch`` at a time."""
    ids = session.scalars(
        select(Chunk.id).where(Chunk.collection_id == collection_id).order_by(Chunk.id)
    ).all()
    for at in range(0, len(ids), batch):
        part = ids[at : at + batch]
        rows = session.execute(
            select(Chunk.id, Chunk.text).where(Chunk.id.in_(part)).order_by(Chunk.id)
        ).all()
        yield [(int(i), str(t)) for i, t in rows]


def set_chunk_terms(session: Session, terms: Mapping[int, str]) -> None:
    """Replace the stored lexical terms of the given chunks (``{chunk id: terms}``)."""
    if terms:
        session.execute(update(Chunk), [{"id": i, "terms": t} for i, t in terms.items()])


def page_lengths(session: Session, document_ids: Sequence[str]) -> dict[str, dict[int, int]]:
    """``{document id: {page number: length of its text}}`` for mapping spans to pages."""
    out: dict[str, dict[int, int]] = {d: {} for d in document_ids}
    if not document_ids:
        return out
    rows = session.execute(
        select(PageText.document_id, PageText.number, func.length(PageText.text)).where(
            PageText.document_id.in_(list(document_ids))
        )
    )
    for doc_id, number, length in rows:
        out[doc_id][number] = int(length)
    return out


def page_texts(session: Session, doc_id: str) -> dict[int, str]:
    """``{page number: its text}`` of one document."""
    rows = session.execute(
        select(PageText.number, PageText.text).where(PageText.document_id == doc_id)
    )
    return {number: text for number, text in rows}


def chunk_positions(session: Session, doc_id: str) -> list[tuple[int, int, int]]:
    """``(page_start, char_start, length)`` of a document's chunks in reading order."""
    rows = session.execute(
        select(Chunk.page_start, Chunk.char_start, Chunk.text)
        .where(Chunk.document_id == doc_id)
        .order_by(Chunk.ordinal)
    )
    return [(page, start, len(text)) for page, start, text in rows]
