"""Collections and documents as a signed-in user may see and change them.

Every operation takes the caller's ``Principal`` and checks it against the grants first
(``qa.accounts.access``): a collection the caller may not read does not exist for them (NotFound),
one they may read but not write answers PermissionDenied. Changes are written to the audit
log. Parsing is never done here: uploads go to the ``IngestQueue``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qa.accounts.access import READ, WRITE, AccessService
from qa.accounts.audit import AuditLog
from qa.accounts.users import Principal
from qa.errors import Conflict, NotFound, PermissionDenied, Unavailable
from qa.library.ingest_queue import IngestQueue, Upload
from qa.messages import N_
from qa.retrieval.index_store import IndexStore
from qa.store import catalog
from qa.store.blob_refs import after_delete
from qa.store.blobstore import BlobStore
from qa.store.catalog import (
    PageContent,
    ensure_collection,
    list_documents,
    validate_collection_name,
)
from qa.store.db.engine import Database
from qa.store.db.models import Collection, DocStatus, Document, PageText

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionView:
    id: int
    name: str
    documents: int
    chunks: int
    #: what the caller may do: "read" or "write"
    permission: str


@dataclass(frozen=True)
class Original:
    path: Path
    name: str
    detected_type: str | None


class LibraryService:
    def __init__(
        self,
        db: Database,
        access: AccessService,
        audit: AuditLog,
        blobs: BlobStore,
        indexes: IndexStore,
        queue: IngestQueue | None = None,
    ) -> None:
        self.db = db
        self.access = access
        self.audit = audit
        self.blobs = blobs
        self.indexes = indexes
        self.queue = queue

    # -- collections ----------------------------------------------------------------------

    def collections(self, p: Principal) -> list[CollectionView]:
        writable = set(self.access.writable_collection_ids(p))
        return [
            CollectionView(c.id, c.name, docs, chunks, WRITE if c.id in writable else READ)
            for c, docs, chunks in self.access.visible_collections(p)
        ]

    def collection(self, p: Principal, collection_id: int) -> CollectionView:
        for view in self.collections(p):
            if view.id == collection_id:
                return view
        raise NotFound(N_("no collection with id %(id)s", id=collection_id))

    def create_collection(self, p: Principal, name: str, *, ip: str | None = None) -> int:
        if not p.can_manage_collections:
            raise PermissionDenied(N_("only admins and editors create collections"))
        name = validate_collection_name(name)
        with self.db.session() as session:
            if session.scalar(select(Collection.id).where(Collection.name == name)) is not None:
                raise Conflict(N_("a collection named %(name)s exists already", name=repr(name)))
            coll = ensure_collection(session, name)
            session.commit()
            coll_id = coll.id
        if not p.is_admin:
            # An editor who creates a collection must be able to fill it.
            self.access.grant(coll_id, WRITE, user_id=p.user_id)
        self.audit.record("create_collection", actor=p, target=name, ip=ip)
        return coll_id

    def rename_collection(
        self, p: Principal, collection_id: int, name: str, *, ip: str | None = None
    ) -> None:
        self.access.require_write(p, collection_id)
        name = validate_collection_name(name)
        with self.db.session() as session:
            coll = self._get_collection(session, collection_id)
            old = coll.name
            coll.name = name
            try:
                session.commit()
            except IntegrityError as exc:
                raise Conflict(
                    N_("a collection named %(name)s exists already", name=repr(name))
                ) from exc
        self.audit.record("rename_collection", actor=p, target=name, details={"from": old}, ip=ip)

    def delete_collection(self, p: Principal, collection_id: int, *, ip: str | None = None) -> int:
        self.access.require_write(p, collection_id)
        with self.db.session() as session:
            coll = self._get_collection(session, collection_id)
            name, key = coll.name, coll.index_key
            docs = session.scalars(select(Document).where(Document.collection_id == coll.id)).all()
            shas = catalog.delete_documents(session, docs)
            session.delete(coll)
            session.commit()
        # Rows go first: from here on the collection is in nobody's readable set, so its
        # index is never searched again even before the files are gone.
        self.indexes.drop(key)
        self._forget(shas)
        self.audit.record(
            "delete_collection", actor=p, target=name, details={"documents": len(docs)}, ip=ip
        )
        return len(docs)

    # -- documents ------------------------------------------------------------------------

    def documents(
        self, p: Principal, collection_id: int, status: str | None = None
    ) -> list[Document]:
        self.access.require_read(p, collection_id)
        with self.db.session() as session:
            return list(list_documents(session, collection_id, status))

    def document(self, p: Principal, doc_id: str) -> Document:
        with self.db.session() as session:
            doc = session.get(Document, doc_id)
        if doc is None:
            raise NotFound(N_("no document %(id)s", id=repr(doc_id)))
        try:
            self.access.require_read(p, doc.collection_id)
        except NotFound:
            raise NotFound(N_("no document %(id)s", id=repr(doc_id))) from None
        return doc

    def pages(self, p: Principal, doc_id: str) -> list[PageContent]:
        """The stored page texts in order (with the line boxes of OCR'd pages)."""
        doc = self.document(p, doc_id)
        with self.db.session() as session:
            rows = session.execute(
                select(PageText.number, PageText.text, PageText.boxes)
                .where(PageText.document_id == doc.id)
                .order_by(PageText.number)
            ).all()
        return [PageContent(n, t, boxes) for n, t, boxes in rows]

    def original(self, p: Principal, doc_id: str) -> Original:
        doc = self.document(p, doc_id)
        path = self.blobs.path_for(doc.sha256)
        if not path.is_file():
            raise NotFound(N_("the original of document %(id)s is gone", id=repr(doc_id)))
        return Original(path, doc.original_name, doc.detected_type)

    def upload(
        self,
        p: Principal,
        collection_id: int,
        stream: IO[bytes],
        name: str,
        *,
        ip: str | None = None,
    ) -> list[Upload]:
        self.access.require_write(p, collection_id)
        queue = self._queue()
        with self.db.session() as session:
            coll_name = self._get_collection(session, collection_id).name
        results = queue.submit(coll_name, stream, name)
        self.audit.record(
            "upload",
            actor=p,
            target=coll_name,
            details={"files": [asdict(u) for u in results][:200]},
            ip=ip,
        )
        return results

    def delete_documents(
        self, p: Principal, doc_ids: Sequence[str], *, ip: str | None = None
    ) -> list[str]:
        docs = [self.document(p, d) for d in doc_ids]
        for doc in docs:
            self.access.require_write(p, doc.collection_id)
        with self.db.session() as session:
            # One deleted by someone else meanwhile has no row: the goal is reached.
            rows = [row for doc in docs if (row := session.get(Document, doc.id)) is not None]
            touched = {row.collection_id for row in rows}
            shas = catalog.delete_documents(session, rows)
            session.commit()
        # Retrieval hydrates every hit from the DB, so the deleted chunks stopped being
        # served at the commit above; republishing only makes the indexes smaller again.
        self._forget(shas)
        for coll_id in touched:
            self._reindex_quietly(coll_id)
        names = [d.original_name for d in docs]
        self.audit.record(
            "delete_document",
            actor=p,
            target=", ".join(names)[:300],
            details={"document_ids": [d.id for d in docs]},
            ip=ip,
        )
        return names

    def retry(self, p: Principal, doc_ids: Sequence[str], *, ip: str | None = None) -> int:
        docs = [self.document(p, d) for d in doc_ids]
        for doc in docs:
            self.access.require_write(p, doc.collection_id)
        # Indexed ones have nothing to retry; a failure whose file is the problem (a
        # password, an unsupported type) would fail the same way again.
        todo = [
            d.id
            for d in docs
            if d.status != DocStatus.INDEXED and (d.status != DocStatus.FAILED or d.retryable)
        ]
        if todo:
            self._queue().retry(todo)
        self.audit.record("retry", actor=p, details={"document_ids": todo}, ip=ip)
        return len(todo)

    def reindex(self, p: Principal, collection_id: int, *, ip: str | None = None) -> None:
        self.access.require_write(p, collection_id)
        self._queue().reindex(collection_id)
        self.audit.record("reindex", actor=p, target=str(collection_id), ip=ip)

    # -- helpers --------------------------------------------------------------------------

    def _queue(self) -> IngestQueue:
        if self.queue is None:
            raise Unavailable(N_("ingestion is not running in this process; use `docqa ingest`"))
        return self.queue

    def _reindex_quietly(self, collection_id: int) -> None:
        if self.queue is None:
            return
        try:
            self.queue.reindex(collection_id)
        except Unavailable:
            # The delete is committed and retrieval already ignores the deleted rows; the
            # reconciler republishes the stale index once the queue is back.
            log.warning("could not enqueue the republish of collection %d", collection_id)

    def _forget(self, shas: set[str]) -> None:
        if shas:
            after_delete(self.db, self.blobs, shas)

    @staticmethod
    def _get_collection(session: Session, collection_id: int) -> Collection:
        coll = session.get(Collection, collection_id)
        if coll is None:
            raise NotFound(N_("no collection with id %(id)s", id=collection_id))
        return coll
