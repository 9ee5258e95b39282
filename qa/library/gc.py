"""``docqa gc``: remove what no live document or collection owns any more.

Deletes release their originals and index versions as they happen (``blob_refs``,
``IndexStore.publish``); this sweep is for what earlier versions of docqa, crashes and
interrupted uploads left behind:

* originals no document references (older versions left a replaced version's original
  on disk, issue 12 defect 4), each released under its lock exactly as a delete does;
* rows of the ``blobs`` table with no document and no file;
* upload temp files (a staged blob, a spooled archive) older than the grace period: a
  younger one may belong to an upload in progress;
* index directories of collections that no longer exist, and the leftovers of a drop;
* on SQLite, the deleted rows' pages still in the write-ahead log (and, with
  ``vacuum``, free pages written before ``secure_delete`` was on).

It reports what it freed, and its caller writes the audit event (``record_gc``): ``docqa
gc`` on every run; in scaled mode the reconciler, which sweeps every ``GC_INTERVAL_S``,
when something was freed.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select

from qa.accounts.audit import GC, AuditLog
from qa.retrieval.index_store import TMP_PREFIX, IndexStore
from qa.store.blob_refs import release_unreferenced, unreferenced_rows
from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database
from qa.store.db.models import Collection, Document

log = logging.getLogger(__name__)

#: a temp file younger than this may belong to an upload still being received
GRACE_S = 3600.0
#: how often the reconciler sweeps in scaled mode
GC_INTERVAL_S = 3600.0

_INDEX_KEY = re.compile(r"c(\d+)")


@dataclass
class GcReport:
    originals: int = 0
    original_bytes: int = 0
    temp_files: int = 0
    temp_bytes: int = 0
    #: index directories of deleted collections (and drop leftovers) removed
    index_dirs: list[str] = field(default_factory=list)
    index_bytes: int = 0
    #: whether the SQLite write-ahead log could be emptied (always True on PostgreSQL)
    database_flushed: bool = True
    vacuumed: bool = False
    #: documents whose original is missing (reported: nothing here can bring it back)
    missing_originals: int = 0

    @property
    def freed_anything(self) -> bool:
        return bool(self.originals or self.temp_files or self.index_dirs or self.vacuumed)

    @property
    def freed_bytes(self) -> int:
        return self.original_bytes + self.temp_bytes + self.index_bytes

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "freed_bytes": self.freed_bytes}


def collect_garbage(
    db: Database,
    blobs: BlobStore,
    indexes: IndexStore,
    spool_dir: Path,
    *,
    grace_s: float = GRACE_S,
    vacuum: bool = False,
) -> GcReport:
    """Sweep once (see the module docstring); safe while the service runs."""
    report = GcReport()
    with db.session() as session:
        referenced = set(session.scalars(select(Document.sha256).distinct()).all())
        live_keys = {c.index_key for c in session.scalars(select(Collection)).all()}
    on_disk = set(blobs)
    # Each candidate is checked again under its lock: an upload may claim it meanwhile.
    candidates = (on_disk - referenced) | set(unreferenced_rows(db))
    released = release_unreferenced(db, blobs, candidates)
    report.originals, report.original_bytes = len(released.freed), released.freed_bytes
    report.missing_originals = len(referenced - on_disk)

    cutoff = time.time() - grace_s
    for path in [*blobs.incoming(), *_files(spool_dir)]:
        size = _remove_if_older(path, cutoff)
        if size is not None:
            report.temp_files += 1
            report.temp_bytes += size

    if indexes.root.is_dir():
        for path in sorted(indexes.root.iterdir()):
            if not path.is_dir():
                continue
            leftover = path.name.startswith(TMP_PREFIX)
            key = _INDEX_KEY.fullmatch(path.name)
            if not leftover and (key is None or path.name in live_keys or _exists(db, key)):
                continue
            report.index_bytes += _tree_size(path)
            if leftover:
                shutil.rmtree(path, ignore_errors=True)
            else:
                indexes.drop(path.name)
            report.index_dirs.append(path.name)

    if vacuum:
        db.vacuum()
        report.vacuumed = True
    report.database_flushed = db.flush_deleted()
    log.info("gc: %s", report.to_dict())
    return report


def record_gc(audit: AuditLog, report: GcReport, *, run_by: str) -> None:
    """The sweep's audit event (who ran it: "docqa gc", "reconciler")."""
    audit.record(GC, username=run_by, details=report.to_dict())


def _exists(db: Database, key: re.Match[str]) -> bool:
    """Asked again just before a drop: the collection may have been created meanwhile."""
    with db.session() as session:
        return session.get(Collection, int(key.group(1))) is not None


def _files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from (p for p in directory.iterdir() if p.is_file())


def _remove_if_older(path: Path, cutoff: float) -> int | None:
    try:
        stat = path.stat()
        if stat.st_mtime >= cutoff:
            return None
        path.unlink()
    except FileNotFoundError:
        return None  # its upload finished and removed it meanwhile
    return stat.st_size


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
