"""Whether a stored original may go, decided so that a delete and an upload cannot race.

An original is shared by every document with its bytes (the blob store is
content-addressed), so deleting a document deletes its blob only when no other document
has the same sha256. Counting references and deleting the file as two unrelated steps
loses a race (issue 12, defect 5): an upload of the same bytes has put its file in place
but not yet written its document row, the count says 0, the file goes, and the upload
fails with a missing file.

So both sides lock the blob's row in ``blobs`` first and hold the lock until they commit:

* an upload (``claim_blob``, then its document row, then ``Staged.place()``, then commit);
* a release (``release_unreferenced``: lock, count the documents with those bytes, and
  only when there are none delete the file and the row, then commit).

Whichever takes the lock second waits for the first to commit, so either the release sees
the upload's row and keeps the file, or the upload moves its own staged copy into place
after the release removed the old one. The lock is an upsert (``INSERT ... ON CONFLICT DO
UPDATE``): it locks the row on PostgreSQL even when it has to create it, and on SQLite,
which has one writer at a time, the first write of a transaction takes the write lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database
from qa.store.db.models import Blob, Document, utcnow

log = logging.getLogger(__name__)


def claim_blob(session: Session, sha256: str) -> None:
    """Lock the blob's row (creating it) until the session commits or rolls back."""
    values = {"sha256": sha256, "claimed_at": utcnow()}
    dialect = session.get_bind().dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(Blob).values(values)
    else:
        stmt = sqlite.insert(Blob).values(values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Blob.sha256], set_={"claimed_at": stmt.excluded.claimed_at}
        )
    )


def references(session: Session, sha256: str) -> int:
    """Documents (of any collection, in any status) whose original these bytes are."""
    q = select(func.count()).select_from(Document).where(Document.sha256 == sha256)
    return int(session.scalar(q) or 0)


@dataclass
class Released:
    """What ``release_unreferenced`` removed and kept."""

    freed: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def release_unreferenced(db: Database, blobs: BlobStore, shas: Iterable[str]) -> Released:
    """Delete the blobs of ``shas`` no document references (call after the deleting commit).

    No grace period, not even for ``docqa gc`` sweeping the whole store: an upload places
    its file only while it holds the lock taken here, and writes its document row before
    it lets go, so a file that no row references under the lock belongs to nobody.
    """
    out = Released()
    for sha in sorted(set(shas)):  # one order everywhere: two releases never deadlock
        with db.session() as session:
            claim_blob(session, sha)
            if references(session, sha):
                session.commit()
                continue
            path = blobs.path_for(sha)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = None
            # The file goes before the commit, while the lock is held; if the commit then
            # failed, the row of a missing file with no reference is all that is left.
            if size is not None and blobs.delete(sha):
                out.freed.append(sha)
                out.freed_bytes += size
            session.execute(delete(Blob).where(Blob.sha256 == sha))
            session.commit()
    if out.freed:
        log.info("released %d originals (%d bytes)", len(out.freed), out.freed_bytes)
    return out


def unreferenced_rows(db: Database) -> list[str]:
    """Blob rows no document references (their file may or may not still exist)."""
    with db.session() as session:
        used = select(Document.sha256).where(Document.sha256 == Blob.sha256).exists()
        return list(session.scalars(select(Blob.sha256).where(~used)).all())


def after_delete(db: Database, blobs: BlobStore, shas: Iterable[str]) -> Released:
    """What every delete of documents runs once its rows are committed: their originals
    that no other document shares go, and the DB files drop the deleted rows' pages."""
    released = release_unreferenced(db, blobs, shas)
    db.flush_deleted()
    return released
