"""Folders kept in sync with a collection: adding, listing and removing them.

The scan itself (ingest/folder_sync.py) needs the ingest pipeline; this module only keeps
the sources, so the admin console and ``docqa sync`` share one set of checks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from qa.errors import InvalidInput, NotFound
from qa.messages import N_
from qa.store.catalog import ensure_collection
from qa.store.db.engine import Database
from qa.store.db.models import Collection, SyncSource

#: scanned at most this often, and at least once a week
MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 7 * 24 * 3600
DEFAULT_INTERVAL_S = 600
MAX_GLOBS = 50
MAX_GLOB_CHARS = 200
#: what a share holds besides documents: office lock files, hidden files, partial downloads
DEFAULT_EXCLUDE = (".*", "~$*", "*.tmp", "*.part", "*.crdownload", "Thumbs.db")

_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> int:
    """``"10m"``, ``"2h"``, ``"90s"`` or plain seconds, as seconds within the bounds."""
    match = _INTERVAL.match(text or "")
    if match is None:
        raise InvalidInput(N_("an interval is a number with s, m, h or d, such as 10m"))
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise InvalidInput(
            N_(
                "an interval is between %(min)s s and %(max)s s",
                min=MIN_INTERVAL_S,
                max=MAX_INTERVAL_S,
            )
        )
    return seconds


def _globs(values: list[str] | tuple[str, ...]) -> list[str]:
    globs = [v.strip() for v in values if v and v.strip()]
    if len(globs) > MAX_GLOBS or any(len(g) > MAX_GLOB_CHARS or "\x00" in g for g in globs):
        raise InvalidInput(
            N_("at most %(n)s patterns of %(chars)s characters", n=MAX_GLOBS, chars=MAX_GLOB_CHARS)
        )
    return globs


@dataclass(frozen=True)
class SourceView:
    id: int
    collection_id: int
    collection: str
    path: str
    interval_s: int
    include: list[str]
    exclude: list[str]
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str | None
    last_error: str | None
    last_counts: dict[str, int] | None
    scanning: bool


class SyncSources:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        path: str,
        collection: str,
        *,
        interval_s: int = DEFAULT_INTERVAL_S,
        include: list[str] | tuple[str, ...] = (),
        exclude: list[str] | tuple[str, ...] | None = None,
    ) -> SourceView:
        """A new source: ``path`` must be an existing folder, given as an absolute path
        (a relative one is resolved here, once, so the scheduler never depends on where
        a process was started)."""
        folder = Path(os.path.expanduser(path or ""))
        if not str(path or "").strip() or not folder.is_dir():
            raise InvalidInput(N_("no folder at %(path)s", path=str(path)))
        folder = folder.resolve()
        if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
            raise InvalidInput(N_("an interval is a number with s, m, h or d, such as 10m"))
        with self.db.session() as session:
            coll = ensure_collection(session, collection)
            source = SyncSource(
                collection_id=coll.id,
                path=str(folder),
                interval_s=interval_s,
                include=_globs(list(include)),
                exclude=_globs(list(DEFAULT_EXCLUDE if exclude is None else exclude)),
            )
            session.add(source)
            session.commit()
            return self.get(source.id)

    def list(self, collection_id: int | None = None) -> list[SourceView]:
        with self.db.session() as session:
            query = select(SyncSource, Collection.name).join(Collection).order_by(SyncSource.id)
            if collection_id is not None:
                query = query.where(SyncSource.collection_id == collection_id)
            return [_view(s, name) for s, name in session.execute(query)]

    def get(self, source_id: int) -> SourceView:
        with self.db.session() as session:
            row = session.execute(
                select(SyncSource, Collection.name)
                .join(Collection)
                .where(SyncSource.id == source_id)
            ).first()
        if row is None:
            raise NotFound(N_("no synced folder with id %(id)s", id=source_id))
        return _view(row[0], row[1])

    def remove(self, source_id: int) -> SourceView:
        """Stop syncing the folder. Its documents stay in the collection (delete them there)."""
        view = self.get(source_id)
        with self.db.session() as session:
            source = session.get(SyncSource, source_id)
            if source is not None:
                session.delete(source)
                session.commit()
        return view


def _view(source: SyncSource, collection: str) -> SourceView:
    return SourceView(
        id=source.id,
        collection_id=source.collection_id,
        collection=collection,
        path=source.path,
        interval_s=source.interval_s,
        include=list(source.include or []),
        exclude=list(source.exclude or []),
        last_started_at=source.last_started_at,
        last_finished_at=source.last_finished_at,
        last_status=source.last_status,
        last_error=source.last_error,
        last_counts=dict(source.last_counts or {}) or None,
        scanning=source.scan_token is not None,
    )
