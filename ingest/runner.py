"""Batch operations over the ingest service: what ``docqa ingest/delete/reindex`` run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from ingest.pipeline import IngestService, Outcome, Processed
from ingest.sandbox import ParseLimits
from ingest.sources import Source, iter_sources
from qa.errors import DocqaError, NotFound
from qa.retrieval.publish import Published
from qa.store import catalog
from qa.store.catalog import get_collection, get_document
from qa.store.db.models import Collection, DocStatus, Document

ProgressFn = Callable[[int, int, str], None]


@dataclass
class IngestReport:
    results: list[Processed] = field(default_factory=list)
    chunks: int = 0
    replaced: int = 0
    index_version: str | None = None


def run_ingest(
    service: IngestService,
    paths: list[Path],
    collection: str,
    *,
    retry_failed: bool = False,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest every file under ``paths``; every file ends as one result, none raises."""
    limits = ParseLimits.from_settings(service.settings)
    sources = list(iter_sources(paths, limits))
    report = IngestReport()
    coll_id = service.collection_id(collection)
    for i, src in enumerate(sources):
        if progress:
            progress(i, len(sources), src.name)
        report.results.append(_ingest_one(service, collection, src, retry_failed))
    # Documents an earlier, interrupted run left behind are finished now as well.
    for doc_id in service.pending(coll_id):
        report.results.append(service.process(doc_id))
    if progress:
        progress(len(sources), len(sources), "publishing index")
    report.chunks = sum(r.chunks for r in report.results if r.outcome == Outcome.INDEXED)
    report.replaced = sum(r.replaced for r in report.results)
    report.index_version = service.publish(coll_id).version
    return report


def _ingest_one(service: IngestService, collection: str, src: Source, retry: bool) -> Processed:
    if src.error:
        return Processed("", src.name, Outcome.FAILED, src.error)
    try:
        with src.open() as stream:
            sub = service.submit_stream(collection, stream, src.name)
    except DocqaError as exc:
        return Processed("", src.name, Outcome.FAILED, str(exc))
    except OSError as exc:
        return Processed("", src.name, Outcome.FAILED, f"unreadable: {exc.strerror or exc}")
    if not sub.created and sub.status == DocStatus.INDEXED:
        return Processed(sub.document_id, src.name, Outcome.DUPLICATE)
    if not sub.created and sub.status == DocStatus.FAILED and not retry:
        with service.db.session() as session:
            reason = get_document(session, sub.document_id).error
        return Processed(sub.document_id, src.name, Outcome.FAILED, reason)
    result = service.process(sub.document_id)
    return Processed(
        result.document_id,
        src.name,
        result.outcome,
        result.reason,
        result.pages,
        result.chunks,
        result.replaced,
        result.seconds,
    )


MIN_ID_PREFIX = 6


def check_id_prefixes(id_prefixes: list[str]) -> None:
    """Refuse prefixes too short to name one document (checked before any work starts)."""
    for prefix in id_prefixes:
        if len(prefix) < MIN_ID_PREFIX:
            raise NotFound(
                f"document id prefix {prefix!r} is too short ({MIN_ID_PREFIX}+ characters)"
            )


def delete_documents(service: IngestService, id_prefixes: list[str]) -> list[str]:
    """Delete documents by id or unique id prefix; republish the touched collections."""
    check_id_prefixes(id_prefixes)
    docs: list[Document] = []
    with service.db.session() as session:
        for prefix in id_prefixes:
            matches = session.scalars(select(Document).where(Document.id.startswith(prefix))).all()
            if len(matches) != 1:
                raise NotFound(f"{len(matches)} documents match {prefix!r}")
            docs.append(matches[0])
        shas = catalog.delete_documents(session, docs)
        session.commit()
    service.forget(shas)
    for coll_id in {doc.collection_id for doc in docs}:
        service.publish(coll_id)
    return [doc.original_name for doc in docs]


def delete_collection(service: IngestService, name: str) -> int:
    with service.db.session() as session:
        coll = get_collection(session, name)
        key = coll.index_key
        docs = session.scalars(select(Document).where(Document.collection_id == coll.id)).all()
        shas = catalog.delete_documents(session, docs)
        session.delete(coll)
        session.commit()
    service.forget(shas)
    service.indexes.drop(key)
    return len(docs)


def reindex_collections(service: IngestService, name: str | None = None) -> list[Published]:
    with service.db.session() as session:
        if name:
            ids = [get_collection(session, name).id]
        else:
            ids = list(session.scalars(select(Collection.id).order_by(Collection.id)).all())
    return [service.publish(cid) for cid in ids]
