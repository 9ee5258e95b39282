"""The ``service`` fixture the pipeline and deleted-means-gone tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import IngestService
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.engine import Database
from tests.ingest.ingest_service import ingest_service


@pytest.fixture
def service(tmp_path: Path, db: Database, embedder: Embedder) -> Iterator[IngestService]:
    settings = Settings(data_dir=tmp_path / "var", database_url=db.url, parse_timeout_s=30)
    with ingest_service(settings, db, embedder) as svc:
        yield svc
