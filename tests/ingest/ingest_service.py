"""The ingest service a test drives: wired as the app wires it, over the test's database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ingest.factory import build_ingest_service
from ingest.pipeline import IngestService
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.engine import Database


@contextmanager
def ingest_service(settings: Settings, db: Database, embedder: Embedder) -> Iterator[IngestService]:
    """``build_ingest_service`` on ``db`` (the ``db`` fixture: SQLite or PostgreSQL), its
    sandboxed parser closed afterwards."""
    service = build_ingest_service(settings, embedder, db=db)
    try:
        yield service
    finally:
        service.close()
