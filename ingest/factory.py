"""Build the ingest service from settings: the same wiring for CLI, workers and tests."""

from __future__ import annotations

from ingest.pipeline import IngestService
from qa.retrieval.embedder import Embedder, get_embedder
from qa.retrieval.index_store import IndexStore
from qa.settings import Settings
from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database


def build_ingest_service(
    settings: Settings, embedder: Embedder | None = None, db: Database | None = None
) -> IngestService:
    """``db``: an open database to use (a test's, which it disposes itself) instead of a
    new engine on ``settings.db_url``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return IngestService(
        settings,
        db or Database(settings.db_url),
        BlobStore(settings.blob_dir),
        embedder or get_embedder(settings),
        IndexStore(settings.index_dir, keep=settings.index_keep_versions),
    )
