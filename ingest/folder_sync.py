"""One scan of a synced folder: what was added, changed, renamed or deleted since the last.

A file is compared with what the last scan recorded (``synced_files``) by size and mtime,
then by its SHA-256 only when those differ, so an unchanged share of 50,000 files costs
50,000 ``stat`` calls. New and changed files are stored and queued like uploads (a changed
file keeps its name, so processing it replaces the old version); a new path whose bytes are
those of a vanished one is a rename: the document is renamed, nothing is parsed or embedded
again. Files gone from the folder are deleted from the collection with everything that
"deleted means gone" requires, but only after a walk that saw the whole folder.

Safe to stop at any point (kill -9 included): every file's outcome is committed as it is
decided, a file whose document was stored but not yet recorded is found again by its bytes,
and deletions wait for a complete walk. The next scan therefore ends in the state an
uninterrupted one would have. One scan per source at a time: a scan holds its source by a
token and a heartbeat; another takes over only once the heartbeat is older than the lease.

What the walk does not follow or read: symbolic links to folders (no loops), anything but
regular files (a FIFO would block), files changed in the last ``settle_s`` seconds or while
being hashed (still being written: the next scan takes them), files matching an exclude
pattern or, when include patterns are given, none of them. A file that cannot be read is
counted as an error and keeps its document.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ingest.pipeline import IngestService
from qa.errors import DocqaError, NotFound
from qa.library.ingest_queue import IngestQueue
from qa.messages import N_
from qa.periodic import PeriodicLoop
from qa.reasons import public_reason
from qa.store import catalog
from qa.store.blobstore import display_name
from qa.store.db.models import Collection, Document, SyncedFile, SyncSource

log = logging.getLogger(__name__)

HASH_CHUNK = 1024 * 1024
#: the walk pauses this long every PAUSE_EVERY files: a scan thread that only stats files
#: holds the GIL almost all the time, and questions in the same process (docqa serve)
#: then wait for it at every step (measured: p50 70 ms -> 565 ms during a 50,000-file
#: re-scan; tests/bench/bench_sync.py)
PAUSE_EVERY = 16
PAUSE_S = 0.002


@dataclass
class ScanReport:
    source_id: int
    collection_id: int = 0
    #: "ok", "errors" (some files unreadable), "failed" (the folder itself), "busy"
    status: str = "ok"
    added: int = 0
    changed: int = 0
    renamed: int = 0
    deleted: int = 0
    unchanged: int = 0
    settling: int = 0
    skipped: int = 0
    errors: int = 0
    error: str | None = None
    #: documents stored and waiting to be processed
    pending: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        names = ("added", "changed", "renamed", "deleted", "unchanged", "settling")
        return {n: getattr(self, n) for n in (*names, "skipped", "errors")}

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Seen:
    rel: str
    path: str
    size: int
    mtime_ns: int
    sha256: str


class FolderSync:
    """Scans synced folders into their collections through ``service``."""

    def __init__(
        self,
        service: IngestService,
        *,
        settle_s: float = 10.0,
        files_per_s: float = 200.0,
        lease_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.db = service.db
        self.settle_s = settle_s
        self.min_gap_s = 1.0 / files_per_s if files_per_s > 0 else 0.0
        self.lease_s = lease_s
        self.clock = clock
        self._last_beat = 0.0

    # -- which sources --------------------------------------------------------------------

    def due(self) -> list[int]:
        """Sources whose interval has passed since their last scan began (never scanned
        ones first), leaving out those a live scan holds."""
        now = self._now()
        with self.db.session() as session:
            rows = session.execute(
                select(
                    SyncSource.id,
                    SyncSource.interval_s,
                    SyncSource.last_started_at,
                    SyncSource.scan_token,
                    SyncSource.scan_heartbeat_at,
                ).order_by(SyncSource.last_started_at.is_not(None), SyncSource.id)
            ).all()
        due = []
        for sid, interval, started, token, beat in rows:
            if token is not None and beat is not None and _aware(beat) > now - self._lease:
                continue
            if started is None or _aware(started) + timedelta(seconds=interval) <= now:
                due.append(sid)
        return due

    # -- one scan -------------------------------------------------------------------------

    def scan(self, source_id: int) -> ScanReport:
        report = ScanReport(source_id)
        token = self._hold(source_id)
        if token is None:
            report.status = "busy"
            return report
        try:
            self._scan(source_id, token, report)
        except Exception as exc:  # record it, then let the caller see it too
            report.status = "failed"
            report.error = report.error or public_reason(str(exc))
            raise
        finally:
            self._release(source_id, token, report)
        return report

    def _scan(self, source_id: int, token: str, report: ScanReport) -> None:
        with self.db.session() as session:
            source = session.get(SyncSource, source_id)
            assert source is not None  # _hold found it; removing it waits for the scan's rows
            collection = session.get(Collection, source.collection_id)
            assert collection is not None  # the foreign key cascades
            root, name = Path(source.path), collection.name
            include, exclude = list(source.include or []), list(source.exclude or [])
            report.collection_id = collection.id
            known = {
                f.rel_path: f
                for f in session.scalars(
                    select(SyncedFile).where(SyncedFile.source_id == source_id)
                )
            }
            known_rows = {
                rel: (f.size, f.mtime_ns, f.sha256, f.document_id) for rel, f in known.items()
            }
        if not root.is_dir():
            report.status = "failed"
            report.error = public_reason(f"the folder {root} is missing or not a folder")
            return
        prefix = root.name
        seen: set[str] = set()
        known_shas = {row[2] for row in known_rows.values()}
        maybe_renamed: list[_Seen] = []

        def found(item: _Seen) -> None:
            # New bytes are stored at once (a killed scan keeps its progress); a new path
            # with the bytes of a known file may be a rename, told only once the walk is
            # done and the files that vanished are known.
            if item.rel not in known_rows and item.sha256 in known_shas:
                maybe_renamed.append(item)
            else:
                self._store(source_id, name, item, prefix, item.rel in known_rows, report)

        complete = self._walk(root, include, exclude, known_rows, seen, found, report, token)
        missing = {rel: row for rel, row in known_rows.items() if rel not in seen}
        vanished_by_sha: dict[str, list[str]] = {}
        if complete:
            for rel, row in sorted(missing.items()):
                vanished_by_sha.setdefault(row[2], []).append(rel)
        for item in maybe_renamed:
            self._beat(source_id, token)
            old = vanished_by_sha.get(item.sha256)
            if old:
                self._rename(source_id, old.pop(0), item, prefix)
                report.renamed += 1
            else:  # a copy of a file that is still there
                self._store(source_id, name, item, prefix, False, report)
        if complete:
            gone = [rel for rels in vanished_by_sha.values() for rel in rels]
            report.deleted = self._delete(source_id, report.collection_id, gone)
        if report.errors and report.status == "ok":
            report.status = "errors"

    def _walk(
        self,
        root: Path,
        include: list[str],
        exclude: list[str],
        known: dict[str, tuple[int, int, str, str | None]],
        seen: set[str],
        found: Callable[[_Seen], None],
        report: ScanReport,
        token: str,
    ) -> bool:
        """Walk the folder; True when it was read whole (deletions may then be decided)."""
        complete = True
        looked = 0

        def failed(exc: OSError) -> None:
            nonlocal complete
            complete = False  # an unreadable folder: its files are not gone
            report.errors += 1
            report.error = report.error or public_reason(f"{exc.strerror}: {exc.filename}")

        for dirpath, dirnames, filenames in os.walk(root, onerror=failed, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not _matches(d, d, exclude))
            for filename in sorted(filenames):
                full = os.path.join(dirpath, filename)
                rel = Path(full).relative_to(root).as_posix()
                if _matches(rel, filename, exclude) or (
                    include and not _matches(rel, filename, include)
                ):
                    continue
                self._beat(report.source_id, token)
                self._look_at(full, rel, known, seen, found, report)
                looked += 1
                if looked % PAUSE_EVERY == 0:
                    time.sleep(PAUSE_S)
        return complete

    def _look_at(
        self,
        full: str,
        rel: str,
        known: dict[str, tuple[int, int, str, str | None]],
        seen: set[str],
        found: Callable[[_Seen], None],
        report: ScanReport,
    ) -> None:
        try:
            st = os.stat(full)  # follows a link to a file; links to folders are not walked
        except OSError as exc:
            if rel in known:
                seen.add(rel)  # a dangling or unreadable entry keeps its document
            report.errors += 1
            report.error = report.error or public_reason(f"{exc.strerror}: {rel}")
            return
        if not stat.S_ISREG(st.st_mode):
            report.skipped += 1
            return
        seen.add(rel)
        if self.clock() - st.st_mtime < self.settle_s:
            report.settling += 1  # still being written, perhaps: the next scan takes it
            return
        row = known.get(rel)
        if row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            report.unchanged += 1
            return
        started = time.monotonic()
        try:
            sha = _sha256(full)
            after = os.stat(full)
        except OSError as exc:
            report.errors += 1
            report.error = report.error or public_reason(f"{exc.strerror}: {rel}")
            return
        finally:
            gap = self.min_gap_s - (time.monotonic() - started)
            if gap > 0:
                time.sleep(gap)  # a share of 50,000 new files must not starve questions
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            report.settling += 1  # it changed while being read
            return
        if row is not None and row[2] == sha:
            self._touch(report.source_id, rel, st)
            report.unchanged += 1
            return
        found(_Seen(rel, full, st.st_size, st.st_mtime_ns, sha))

    # -- what a file's outcome writes -----------------------------------------------------

    def _store(
        self,
        source_id: int,
        collection: str,
        item: _Seen,
        prefix: str,
        existed: bool,
        report: ScanReport,
    ) -> None:
        try:
            with open(item.path, "rb") as stream:
                sub = self.service.submit_stream(collection, stream, f"{prefix}/{item.rel}")
        except OSError as exc:
            report.errors += 1
            report.error = report.error or public_reason(f"{exc.strerror}: {item.rel}")
            return
        with self.db.session() as session:
            _record(session, source_id, item, sub.document_id)
            session.commit()
        if sub.created:
            report.pending.append(sub.document_id)
        if existed:
            report.changed += 1
        else:
            report.added += 1

    def _rename(self, source_id: int, old: str, item: _Seen, prefix: str) -> None:
        with self.db.session() as session:
            row = session.get(SyncedFile, (source_id, old))
            doc_id = row.document_id if row is not None else None
            if row is not None:
                session.delete(row)
                session.flush()
            _record(session, source_id, item, doc_id)
            doc = session.get(Document, doc_id) if doc_id else None
            if doc is not None:
                doc.original_name = display_name(f"{prefix}/{item.rel}")
            session.commit()

    def _touch(self, source_id: int, rel: str, st: os.stat_result) -> None:
        with self.db.session() as session:
            session.execute(
                update(SyncedFile)
                .where(SyncedFile.source_id == source_id, SyncedFile.rel_path == rel)
                .values(size=st.st_size, mtime_ns=st.st_mtime_ns)
            )
            session.commit()

    def _delete(self, source_id: int, collection_id: int, gone: list[str]) -> int:
        if not gone:
            return 0
        with self.db.session() as session:
            rows = session.scalars(
                select(SyncedFile).where(
                    SyncedFile.source_id == source_id, SyncedFile.rel_path.in_(gone)
                )
            ).all()
            doc_ids = {r.document_id for r in rows if r.document_id}
            # A document another file of a synced folder still is stays.
            still = set(
                session.scalars(
                    select(SyncedFile.document_id).where(
                        SyncedFile.document_id.in_(doc_ids),
                        or_(SyncedFile.source_id != source_id, SyncedFile.rel_path.not_in(gone)),
                    )
                )
            )
            docs = [
                d
                for d in session.scalars(select(Document).where(Document.id.in_(doc_ids - still)))
                if d.collection_id == collection_id
            ]
            session.execute(
                delete(SyncedFile).where(
                    SyncedFile.source_id == source_id, SyncedFile.rel_path.in_(gone)
                )
            )
            shas = catalog.delete_documents(session, docs)
            session.commit()
        self.service.forget(shas)
        return len(gone)

    # -- holding the source ---------------------------------------------------------------

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.lease_s)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _hold(self, source_id: int) -> str | None:
        token, now = secrets.token_hex(8), self._now()
        with self.db.session() as session:
            if session.get(SyncSource, source_id) is None:
                raise NotFound(N_("no synced folder with id %(id)s", id=source_id))
            held = session.execute(
                update(SyncSource)
                .where(
                    SyncSource.id == source_id,
                    or_(
                        SyncSource.scan_token.is_(None),
                        SyncSource.scan_heartbeat_at < now - self._lease,
                    ),
                )
                .values(scan_token=token, scan_heartbeat_at=now, last_started_at=now)
            )
            session.commit()
        return token if held.rowcount == 1 else None  # type: ignore[attr-defined]

    def _beat(self, source_id: int, token: str) -> None:
        if time.monotonic() - self._last_beat < min(5.0, self.lease_s / 4):
            return
        self._last_beat = time.monotonic()
        with self.db.session() as session:
            session.execute(
                update(SyncSource)
                .where(SyncSource.id == source_id, SyncSource.scan_token == token)
                .values(scan_heartbeat_at=self._now())
            )
            session.commit()

    def _release(self, source_id: int, token: str, report: ScanReport) -> None:
        with self.db.session() as session:
            session.execute(
                update(SyncSource)
                .where(SyncSource.id == source_id, SyncSource.scan_token == token)
                .values(
                    scan_token=None,
                    scan_heartbeat_at=None,
                    last_finished_at=self._now(),
                    last_status=report.status,
                    last_error=report.error,
                    last_counts=report.counts(),
                )
            )
            session.commit()


def _record(session: Session, source_id: int, item: _Seen, document_id: str | None) -> None:
    """What this scan saw of a file, and the document it is (inserted or updated)."""
    row = session.get(SyncedFile, (source_id, item.rel))
    if row is None:
        row = SyncedFile(source_id=source_id, rel_path=item.rel)
        session.add(row)
    row.size, row.mtime_ns, row.sha256 = item.size, item.mtime_ns, item.sha256
    row.document_id = document_id


def _matches(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class FolderSyncLoop(PeriodicLoop):
    """``docqa serve`` without a broker: every ``check_s`` seconds, scan the folders whose
    interval has passed and hand what they stored to the ingest queue (in scaled mode
    Celery beat runs ``docqa.folder_sync`` instead)."""

    def __init__(self, sync: FolderSync, queue: IngestQueue, check_s: float) -> None:
        super().__init__("folder-sync", check_s, lambda stop: _ran(run_due(sync, queue, stop)))


def _ran(scanned: int) -> None:
    if scanned:
        log.debug("scanned %d synced folders", scanned)


def run_due(sync: FolderSync, queue: IngestQueue, stop: threading.Event | None = None) -> int:
    """Scan every due folder, one after the other; returns how many were scanned."""
    scanned = 0
    for source_id in sync.due():
        if stop is not None and stop.is_set():
            break
        scanned += scan_and_queue(sync, queue, source_id) is not None
    return scanned


def scan_and_queue(sync: FolderSync, queue: IngestQueue, source_id: int) -> ScanReport | None:
    """One scan; what it stored goes to the queue, deletions get the index republished.
    A failure is logged (and recorded on the source): the next interval tries again."""
    try:
        report = sync.scan(source_id)
    except DocqaError as exc:
        log.warning("synced folder %s: %s", source_id, exc)
        return None
    except Exception:  # the loop must outlive one bad scan
        log.exception("synced folder %s: scan failed", source_id)
        return None
    if report.pending:
        queue.retry(report.pending)
    elif report.deleted:  # names come from the database at retrieval: renames need nothing
        queue.reindex(report.collection_id)
    log.info("synced folder %s: %s %s", source_id, report.status, report.counts())
    return report
