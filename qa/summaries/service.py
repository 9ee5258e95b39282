"""Summaries of one document or a whole collection, every statement citing its pages.

    document    its text cut into windows (``windowing``) -> a few statements per window
                -> combined into at most N statements (``mapreduce`` with a model,
                ``synthesis.Extractive`` without one)
    collection  a short summary per document, then a synthesis across them that cites
                document and pages

This module only orchestrates: it reads the document through the store, picks how
statements are made, walks the windows reporting progress and builds the result
(``synthesis``). Each generation takes the model slot with BATCH priority and gives way to
any question (``qa.llm.resumable``): a question never waits for a whole job, and at most
for one token or one prefill chunk.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from qa.errors import InvalidInput, NotFound
from qa.llm.generate import Generator
from qa.llm.resumable import ResumableGenerator
from qa.llm.slot import ModelSlot
from qa.messages import N_
from qa.retrieval.embedder import Embedder
from qa.store import catalog
from qa.store.db.engine import Database
from qa.store.db.models import DocStatus, Document
from qa.summaries.control import JobControl, Run
from qa.summaries.mapreduce import MapReduce
from qa.summaries.options import SummaryOptions
from qa.summaries.synthesis import Extractive, collection_result, document_result
from qa.summaries.text import Statement
from qa.summaries.windowing import DocumentText, Window, read_pieces

log = logging.getLogger(__name__)

#: a document and the statements of its own summary
_PerDocument = list[tuple[DocumentText, list[Statement]]]


class Method(Protocol):
    """How statements are made: written by the model (``MapReduce``) or quoted
    (``Extractive``)."""

    mode: str
    label: str
    #: the share of a document's progress that its windows take (the rest: combining)
    map_share: float

    def windows(self, doc: DocumentText, opts: SummaryOptions) -> list[Window]: ...

    def per_window(self, limit: int, windows: int, opts: SummaryOptions) -> int: ...

    def map(self, doc: DocumentText, window: Window, n: int, run: Run) -> list[Statement]: ...

    def combine(
        self, statements: list[Statement], limit: int, run: Run, name: str, *, force: bool = False
    ) -> list[Statement]: ...


class SummaryService:
    def __init__(
        self,
        db: Database,
        embedder: Embedder | None,
        generator: Generator | None = None,
        *,
        slot: ModelSlot | None = None,
        options: SummaryOptions | None = None,
        kv_cache_bytes: int = 2 << 30,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.generator = generator
        # The AnswerService's slot, so questions and summaries share one queue in which
        # questions go first.
        self.slot = slot or ModelSlot()
        self.options = options or SummaryOptions()
        self.options.validate()
        self.method = self._method(kv_cache_bytes)

    def _method(self, kv_cache_bytes: int) -> Method:
        quotes = Extractive(self.embedder, self.slot)
        if self.generator is None:
            return quotes
        model = ResumableGenerator(self.generator, self.slot, kv_cache_bytes=kv_cache_bytes)
        return MapReduce(model, quotes)

    @classmethod
    def from_answers(cls, answers: Any, options: SummaryOptions | None = None) -> SummaryService:
        """Share the answer service's database, embedder, model and model slot."""
        return cls(
            answers.db, answers.embedder, answers.generator, slot=answers.slot, options=options
        )

    @property
    def mode(self) -> str:
        return self.method.mode

    # -- entry points ---------------------------------------------------------------------

    def summarize_document(
        self,
        doc_id: str,
        *,
        control: JobControl | None = None,
        options: SummaryOptions | None = None,
    ) -> dict[str, Any]:
        run = Run(options or self.options, control or JobControl())
        doc = self._load(doc_id)
        statements, windows = self._document(doc, run.options.max_statements, run)
        made_by = self._made_by()
        result = document_result(doc, made_by, statements, windows, run.stats.to_dict())
        run.control.progress(1.0)
        return result

    def summarize_collection(
        self,
        collection_id: int,
        *,
        control: JobControl | None = None,
        options: SummaryOptions | None = None,
    ) -> dict[str, Any]:
        run = Run(options or self.options, control or JobControl())
        name, ready, skipped = self._collection_documents(collection_id)
        if not ready:
            raise InvalidInput(
                N_("collection %(name)s has no indexed documents to summarize", name=repr(name))
            )
        per_doc = self._documents(ready, run)
        everything = [s for _, statements in per_doc for s in statements]
        synthesis = self.method.combine(
            everything, run.options.max_statements, run, name, force=True
        )
        result = collection_result(
            (collection_id, name), self._made_by(), synthesis, per_doc, skipped, run.stats.to_dict()
        )
        run.control.progress(1.0)
        return result

    def _made_by(self) -> dict[str, str]:
        return {"model": self.method.mode, "label": self.method.label}

    # -- walking the documents and windows ------------------------------------------------

    def _documents(self, ready: list[str], run: Run) -> _PerDocument:
        per_doc: _PerDocument = []
        # The synthesis gets the last tenth of the progress bar.
        share = 0.9 / len(ready)
        for i, doc_id in enumerate(ready):
            run.control.check()
            doc = self._load_if_ready(doc_id)
            if doc is not None:
                part = run.part(i * share, (i + 1) * share)
                statements, _ = self._document(doc, run.options.statements_per_document, part)
                per_doc.append((doc, statements))
        return per_doc

    def _document(
        self, doc: DocumentText, limit: int, run: Run
    ) -> tuple[list[Statement], list[Window]]:
        windows = self.method.windows(doc, run.options)
        run.stats.windows += len(windows)
        n = self.method.per_window(limit, len(windows), run.options)
        mapped: list[Statement] = []
        for i, window in enumerate(windows):
            run.control.check()
            mapped += self.method.map(doc, window, n, run)
            run.control.progress((i + 1) / len(windows) * self.method.map_share)
        final = self.method.combine(mapped, limit, run, doc.name)
        run.control.progress(1.0)
        return final, windows

    # -- reading ----------------------------------------------------------------------------

    def _load(self, doc_id: str) -> DocumentText:
        with self.db.session() as session:
            doc = catalog.get_document(session, doc_id)
            _require_indexed(doc)
            pages = catalog.page_texts(session, doc.id)
            pieces = read_pieces(pages, catalog.chunk_positions(session, doc.id))
            name, title = doc.original_name, doc.title or doc.original_name
            if not pieces:
                raise InvalidInput(N_("%(name)s has no text to summarize", name=name))
            return DocumentText(doc_id, name, title, doc.collection_id, pieces)

    def _load_if_ready(self, doc_id: str) -> DocumentText | None:
        """The document of a collection summary, or None if deleted or re-queued meanwhile."""
        try:
            return self._load(doc_id)
        except (NotFound, InvalidInput) as exc:
            log.info("collection summary skips %s: %s", doc_id, exc)
            return None

    def _collection_documents(
        self, collection_id: int
    ) -> tuple[str, list[str], list[dict[str, Any]]]:
        """The collection's name, the documents to summarize, and the others with why."""
        with self.db.session() as session:
            name = catalog.get_collection_by_id(session, collection_id).name
            docs = catalog.list_documents(session, collection_id)
            ready = [d.id for d in docs if d.status == DocStatus.INDEXED and d.chunk_count > 0]
            skipped = [
                {"document_id": d.id, "document_name": d.original_name, "status": d.status}
                for d in docs
                if d.id not in ready
            ]
        return name, ready, skipped


def _require_indexed(doc: Document) -> None:
    if doc.status != DocStatus.INDEXED:
        raise InvalidInput(
            N_(
                "%(name)s is %(status)s, not indexed: nothing to summarize yet",
                name=doc.original_name,
                status=doc.status,
            )
        )
