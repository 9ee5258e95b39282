"""Storing an upload: the half of ``IngestQueue.submit`` every queue shares.

Both queues (embedded thread pool, Celery) first make an upload durable, then schedule its
processing. Storing everything before scheduling anything matters for the Celery queue: if
the broker is unreachable halfway through a zip archive, every member already has its
``queued`` row, and the reconciler finds all of them later.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import IO

from ingest.pipeline import IngestService
from ingest.sandbox import ParseLimits
from ingest.sources import Source, named_file_sources
from qa.errors import DocqaError
from qa.library.ingest_queue import Upload
from qa.reasons import public_reason
from qa.store.blobstore import display_name
from qa.store.db.models import DocStatus, Document

#: (document id, collection id) of a document that still has to be processed
Pending = tuple[str, int]


def store_upload(
    service: IngestService, collection: str, stream: IO[bytes], name: str, spool_dir: Path
) -> tuple[list[Upload], list[Pending]]:
    """Store the bytes (a zip archive: each member) and register ``queued`` documents.

    Returns one ``Upload`` per file and the documents the caller must schedule.
    """
    name = display_name(name or "upload")
    spool_dir.mkdir(parents=True, exist_ok=True)
    # Spooled to a file first: a zip archive (a folder upload) needs random access.
    fd, tmp_name = tempfile.mkstemp(dir=spool_dir, suffix=".upload")
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as f:
            shutil.copyfileobj(stream, f, 1024 * 1024)
        limits = ParseLimits.from_settings(service.settings)
        uploads: list[Upload] = []
        pending: list[Pending] = []
        for src in named_file_sources(tmp, name, limits):
            upload, todo = _store_one(service, collection, src)
            uploads.append(upload)
            if todo is not None:
                pending.append(todo)
        return uploads, pending
    finally:
        tmp.unlink(missing_ok=True)


def _store_one(
    service: IngestService, collection: str, src: Source
) -> tuple[Upload, Pending | None]:
    if src.error:
        return Upload(src.name, None, DocStatus.FAILED, False, src.error), None
    try:
        with src.open() as stream:
            sub = service.submit_stream(collection, stream, src.name)
    except DocqaError as exc:
        return Upload(src.name, None, DocStatus.FAILED, False, public_reason(str(exc))), None
    if sub.created:
        upload = Upload(sub.name, sub.document_id, DocStatus.QUEUED, True)
        return upload, (sub.document_id, sub.collection_id)
    if sub.status in (DocStatus.QUEUED, DocStatus.PROCESSING):
        # The same bytes are already on their way: scheduling them again would only have
        # two workers process one document at once (or re-parse one that failed).
        return Upload(sub.name, sub.document_id, DocStatus.QUEUED, False), None
    error = None
    if sub.status == DocStatus.FAILED:
        with service.db.session() as session:
            doc = session.get(Document, sub.document_id)
            error = doc.error if doc is not None else None
    return Upload(sub.name, sub.document_id, sub.status, False, error), None
