"""An answer service over collections ingested for a test: the setup the answer, decline,
quote and remote-generation tests share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.answering.answer_service import AnswerService
from qa.answering.assembly import build_answer_service
from qa.llm.generate import Generator
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.catalog import get_collection


def answer_service_over(
    settings: Settings,
    embedder: Embedder,
    collections: Mapping[str, list[Path]],
    generator: Generator | None = None,
) -> tuple[AnswerService, dict[str, int]]:
    """Ingest each collection's files (name -> paths) into ``settings.data_dir``, then
    build the answer service as the app does; returns it and the collections' ids."""
    ingest = build_ingest_service(settings, embedder)
    try:
        for name, paths in collections.items():
            run_ingest(ingest, paths, name)
    finally:
        ingest.close()
    service = build_answer_service(settings, embedder=embedder, generator=generator)
    with service.db.session() as session:
        return service, {name: get_collection(session, name).id for name in collections}
