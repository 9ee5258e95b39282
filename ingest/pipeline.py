"""The ingest pipeline: the one service function an ingest task (or the CLI) calls.

    submit  -> original stored in the blob store, document row ``queued``
    process -> parse in the sandbox, chunk, analyze, embed, write it all in one
               transaction with status ``indexed`` (or ``failed`` with the reason)
    publish -> the collection's indexes rebuilt from the DB (see ``qa.retrieval.publish``)

Each step is idempotent: a collection holds one document per sha256, so submitting the
same bytes again finds the same row, and a document left ``processing`` by a crash is simply
processed again, replacing any partial rows in the same transaction. Whatever a delete or a
replaced version leaves unreferenced goes at once (``forget``): originals no other document
shares, and, on SQLite, the deleted rows' pages in the write-ahead log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest.chunker import chunk_document
from ingest.document import Page, ParsedDocument
from ingest.sandbox import ParseLimits, SandboxedParser
from qa.errors import DocqaError, InvalidInput, ParseError
from qa.messages import N_, Translatable
from qa.reasons import public_reason
from qa.retrieval.embedder import Embedder
from qa.retrieval.index_store import IndexStore
from qa.retrieval.lexical import bm25_terms
from qa.retrieval.publish import Published, publish_collection
from qa.settings import Settings
from qa.store.blob_refs import Released, after_delete, claim_blob
from qa.store.blobstore import BlobStore, display_name
from qa.store.catalog import (
    ChunkRow,
    PageContent,
    delete_documents,
    ensure_collection,
    find_document,
    get_document,
    new_document_id,
    replace_document_content,
)
from qa.store.db.engine import Database
from qa.store.db.models import Collection, DocStatus, Document

log = logging.getLogger(__name__)


def page_content(page: Page) -> PageContent:
    """A parsed page as stored: an OCR'd page keeps its line boxes for the viewer."""
    boxes = None
    if page.ocr:
        boxes = [[b.start, b.end, b.left, b.top, b.right, b.bottom] for b in page.boxes]
    return PageContent(page.number, page.text, boxes)


class Outcome:
    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    FAILED = "failed"


@dataclass(frozen=True)
class Submitted:
    document_id: str
    collection_id: int
    name: str
    #: False when these bytes were already in the collection (nothing new was created)
    created: bool
    status: str


@dataclass(frozen=True)
class Processed:
    document_id: str
    name: str
    outcome: str
    reason: str | None = None
    pages: int = 0
    chunks: int = 0
    replaced: int = 0
    seconds: float = 0.0


def chunk_rows(pages: Sequence[Page], embedder: Embedder, settings: Settings) -> list[ChunkRow]:
    """Chunk pages in the embedder's tokens and derive each chunk's BM25 terms."""
    # A model with a short max_seq_length caps the chunk size; the overlap shrinks with it.
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens)
    drafts = chunk_document(
        pages,
        embedder.tokenizer,
        max_tokens=max_tokens,
        overlap=min(settings.chunk_overlap, max_tokens // 2),
    )
    return [
        ChunkRow(
            ordinal=d.ordinal,
            text=d.text,
            page_start=d.page_start,
            page_end=d.page_end,
            char_start=d.char_start,
            char_end=d.char_end,
            heading_path=d.heading_path,
            token_count=d.token_count,
            terms=" ".join(bm25_terms(d.text)),
        )
        for d in drafts
    ]


class IngestService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        embedder: Embedder,
        indexes: IndexStore,
        parser: SandboxedParser | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.embedder = embedder
        self.indexes = indexes
        self.parser = parser or SandboxedParser(ParseLimits.from_settings(settings))

    def close(self) -> None:
        self.parser.close()

    # -- submit ---------------------------------------------------------------------------

    def submit_stream(self, collection: str, stream: IO[bytes], raw_name: str) -> Submitted:
        """Store the bytes and register a ``queued`` document (or find the existing one)."""
        name = display_name(raw_name)
        max_bytes = self.settings.max_file_mb * 1024 * 1024
        with self.blobs.staged(stream, max_bytes=max_bytes) as staged, self.db.session() as session:
            coll = ensure_collection(session, collection)
            # Locked until the commit: a release of these bytes waits, or has finished
            # (and the file goes back in place below); see qa.store.blob_refs.
            claim_blob(session, staged.sha256)
            existing = find_document(session, coll.id, staged.sha256)
            if existing is None:
                doc = Document(
                    id=new_document_id(),
                    collection_id=coll.id,
                    sha256=staged.sha256,
                    original_name=name,
                    size_bytes=staged.size,
                    status=DocStatus.QUEUED,
                )
                session.add(doc)
                session.flush()
            staged.place()
            session.commit()
            if existing is not None:
                return Submitted(
                    existing.id, coll.id, existing.original_name, False, existing.status
                )
            return Submitted(doc.id, coll.id, name, True, DocStatus.QUEUED)

    def submit_file(self, collection: str, path: Path, name: str | None = None) -> Submitted:
        if not path.is_file():
            raise InvalidInput(f"not a file: {path}")
        with path.open("rb") as f:
            return self.submit_stream(collection, f, name or path.name)

    # -- process --------------------------------------------------------------------------

    def process(self, doc_id: str, worker: str | None = None) -> Processed:
        """Parse, chunk, embed and store one document. Never raises for a bad file.

        ``worker``: the node name of the worker processing it, recorded with the
        ``processing`` status, so that the worker's restart (or the expiry of its heartbeat)
        hands the document on at once (``worker.reconcile``)."""
        started = time.perf_counter()
        with self.db.session() as session:
            doc = get_document(session, doc_id)
            if doc.status == DocStatus.INDEXED:
                return Processed(
                    doc.id,
                    doc.original_name,
                    Outcome.DUPLICATE,
                    pages=doc.page_count,
                    chunks=doc.chunk_count,
                )
            sha, name, attempts = doc.sha256, doc.original_name, doc.attempts
            # Still ``processing`` means the previous start never finished: its process
            # died (a parse that merely fails ends ``failed``). A file that took its worker
            # down this often is quarantined instead of being given another one to kill.
            # An explicit retry of a ``failed`` document always parses again.
            quarantine = (
                doc.status == DocStatus.PROCESSING
                and attempts >= self.settings.max_processing_attempts
            )
            if not quarantine:
                doc.status = DocStatus.PROCESSING
                doc.attempts += 1
                doc.claimed_by = worker
                session.commit()
        if quarantine:
            # Worded like the sandbox's own ParserCrashed reasons ("parser crashed (...)").
            reason = N_(
                "parser crashed: its worker died while processing it (%(starts)s starts);"
                " quarantined",
                starts=attempts,
            )
            log.warning("document %s (%s) quarantined: %s", doc_id, name, reason)
            return self._fail(doc_id, name, reason, started, "parser_crashed")

        try:
            parsed = self.parser.parse(self.blobs.path_for(sha), name)
        except ParseError as exc:
            return self._fail(doc_id, name, exc.reason, started, exc.code)

        try:
            rows, pages = self._chunk(parsed)
            vectors = self.embedder.embed_passages([r.text for r in rows])
        except DocqaError as exc:
            return self._fail(doc_id, name, str(exc), started, exc.code)

        with self.db.session() as session:
            doc = get_document(session, doc_id)
            doc.detected_type = parsed.kind
            doc.title = (parsed.title or "")[:1024] or None
            replace_document_content(session, doc, pages, rows, vectors, self.embedder.model_id)
            replaced = self._remove_older_versions(session, doc)
            doc.status = DocStatus.INDEXED
            doc.error = doc.error_code = doc.error_i18n = None
            session.commit()
        if replaced:
            self.forget(replaced)
        return Processed(
            doc_id,
            name,
            Outcome.INDEXED,
            pages=len(pages),
            chunks=len(rows),
            replaced=len(replaced),
            seconds=time.perf_counter() - started,
        )

    def _chunk(self, parsed: ParsedDocument) -> tuple[list[ChunkRow], list[PageContent]]:
        rows = chunk_rows(parsed.pages, self.embedder, self.settings)
        return rows, [page_content(p) for p in parsed.pages]

    def _remove_older_versions(self, session: Session, doc: Document) -> set[str]:
        """A changed file under the same name replaces the old one; returns their sha256s
        (their originals are released after the commit)."""
        older = session.scalars(
            select(Document).where(
                Document.collection_id == doc.collection_id,
                Document.original_name == doc.original_name,
                Document.id != doc.id,
            )
        ).all()
        return delete_documents(session, older)

    def _fail(
        self, doc_id: str, name: str, reason: str, started: float, code: str | None = None
    ) -> Processed:
        """Record a failure; ``code`` is its kind (``Document.retryable`` reads it)."""
        log.info("document %s (%s) failed: %s", doc_id, name, reason)
        with self.db.session() as session:
            doc = get_document(session, doc_id)
            doc.status = DocStatus.FAILED
            said = public_reason(reason)
            doc.error = said[:2000]
            doc.error_i18n = said.to_wire() if isinstance(said, Translatable) else None
            doc.error_code = code[:32] if code else None
            session.commit()
        return Processed(
            doc_id, name, Outcome.FAILED, reason, seconds=time.perf_counter() - started
        )

    def mark_failed(self, doc_id: str, reason: str, code: str | None = None) -> Processed:
        """Record a failure seen outside ``process`` (a worker's time limit, say)."""
        with self.db.session() as session:
            name = get_document(session, doc_id).original_name
        return self._fail(doc_id, name, reason, time.perf_counter(), code)

    def forget(self, shas: set[str]) -> Released:
        """After a committed delete: remove the originals no document references any more
        and the deleted rows' traces in the DB files (deleted means gone)."""
        return after_delete(self.db, self.blobs, shas)

    # -- publish --------------------------------------------------------------------------

    def publish(self, collection_id: int) -> Published:
        return publish_collection(
            self.db,
            self.indexes,
            collection_id,
            model_id=self.embedder.model_id,
            dim=self.embedder.dim,
            kind=self.settings.index_kind,
        )

    def pending(self, collection_id: int | None = None) -> list[str]:
        """Documents a crash or a lost task left ``queued``/``processing``."""
        with self.db.session() as session:
            q = select(Document.id).where(
                Document.status.in_((DocStatus.QUEUED, DocStatus.PROCESSING))
            )
            if collection_id is not None:
                q = q.where(Document.collection_id == collection_id)
            return list(session.scalars(q).all())

    def collection_id(self, name: str) -> int:
        with self.db.session() as session:
            coll = session.scalar(select(Collection).where(Collection.name == name))
            if coll is None:
                coll = ensure_collection(session, name)
                session.commit()
            return coll.id
