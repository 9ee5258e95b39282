"""Summaries of one document or a whole collection, every statement citing its pages.

    document    chunks in page order -> page text they cover (overlaps removed), cut into
                sentences -> windows that fit the model's context -> map: a few statements
                per window -> reduce: combined into at most N statements, in rounds while
                they do not fit one prompt
    collection  a short summary per document, then a synthesis across them that cites
                document and pages

Page numbers are never taken on trust. Every window knows the pages its sentences came from;
a statement keeps a cited page only if it belongs to its own window (or, when combining, to
the statements it combines); otherwise the service attributes the statement itself, to the
passage it shares the most words with, or to its whole window. Citations stay right even
when the model ignores the instruction or invents page numbers.

Each generation takes the model slot with BATCH priority and gives it back afterwards; when a
question queues meanwhile, the generation stops at its next token (or prefill chunk), the
question goes first, and the window continues afterwards from a KV snapshot. A question never
waits for a whole job, and at most for one token or one prefill chunk. In the scaled mode the
generator is a batch ``RemoteGenerator``: the generation worker does the same across
processes (see ``qa.llm.remote``) and ends a preempted request as "preempted".
With no model built the summary is extractive: per window the sentences closest to the
window's centroid (embeddings), then the most central of those; labelled as such.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from sqlalchemy import select

from qa.answering.extractive import split_sentences
from qa.answering.spans import chunk_span_to_pages
from qa.errors import Busy, Cancelled, InvalidInput, NotFound, require
from qa.limits import MAX_SUMMARY_STATEMENTS
from qa.llm.generate import ChatMessage, Generator, Prompt
from qa.llm.kv_cache import KVSessionCache
from qa.llm.slot import BATCH, ModelSlot, Turn
from qa.retrieval.embedder import Embedder
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Collection, DocStatus, Document, PageText
from qa.summaries.text import (
    EXTRACTIVE_LABEL,
    GENERATIVE_LABEL,
    Parsed,
    Span,
    Statement,
    best_overlap,
    clean,
    format_pages,
    intersect,
    parse_statements,
    render_markdown,
)

log = logging.getLogger(__name__)

#: document id -> (its number Dn in a synthesis prompt, its name)
_Legend = dict[str, tuple[int, str]]

MAP_SYSTEM = "You summarize documents for busy readers. You state only what the text says."
_MIN_WORDS = 4
_NEAR_DUPLICATE = 0.92
_MAX_REDUCE_ROUNDS = 4


@dataclass(frozen=True)
class SummaryOptions:
    #: statements in a document summary, and in a collection's synthesis
    max_statements: int = 10
    statements_per_window: int = 3
    #: statements per document inside a collection summary
    statements_per_document: int = 5
    #: cap on a window's text: prefill time on a CPU grows with it
    window_tokens: int = 3000
    max_new_tokens: int = 256
    temperature: float = 0.3
    top_p: float = 0.8
    top_k: int = 20
    seed: int | None = 0
    #: window size without a model (sentences are scored, not generated)
    extractive_window_chars: int = 3000

    def validate(self) -> None:
        require(
            (
                1 <= self.max_statements <= MAX_SUMMARY_STATEMENTS,
                f"max_statements must be between 1 and {MAX_SUMMARY_STATEMENTS}",
            ),
            (1 <= self.statements_per_window <= 20, "statements_per_window: 1 to 20"),
            (1 <= self.statements_per_document <= 20, "statements_per_document: 1 to 20"),
            (64 <= self.window_tokens <= 32768, "window_tokens: 64 to 32768"),
            (16 <= self.max_new_tokens <= 4096, "max_new_tokens: 16 to 4096"),
            (0.0 <= self.temperature <= 2.0, "temperature: 0 to 2"),
            (0.0 < self.top_p <= 1.0, "top_p must be in (0, 1]"),
            (0 <= self.top_k <= 1000, "top_k: 0 to 1000"),
            (200 <= self.extractive_window_chars <= 100_000, "extractive_window_chars"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SummaryOptions:
        known = {f.name for f in fields(cls)}
        options = cls(**{k: v for k, v in (data or {}).items() if k in known})
        options.validate()
        return options


class JobControl:
    """How a running summary reports progress and learns that it should stop.

    This base class keeps both to itself (the CLI); the job runner's subclass writes
    progress to the jobs table and turns a cancel request stored there into ``cancel``.
    """

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.cancel = cancel or threading.Event()

    def progress(self, fraction: float) -> None:
        """Called after every window (0..1, never decreasing)."""

    def poll(self) -> None:
        """Look for a cancel request made elsewhere and set ``cancel`` (cheap, rate-limited)."""

    def check(self) -> None:
        self.poll()
        if self.cancel.is_set():
            raise Cancelled("the summary was cancelled")


class _Part(JobControl):
    """A share [lo, hi) of a parent's progress (one document of a collection)."""

    def __init__(self, parent: JobControl, lo: float, hi: float) -> None:
        super().__init__(parent.cancel)
        self.parent, self.lo, self.hi = parent, lo, hi

    def progress(self, fraction: float) -> None:
        self.parent.progress(self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0))

    def poll(self) -> None:
        self.parent.poll()


@dataclass
class _Stats:
    started: float = field(default_factory=time.perf_counter)
    windows: int = 0
    generations: int = 0
    generation_s: float = 0.0
    queue_wait_s: float = 0.0
    #: windows the model said nothing usable about: their sentences were quoted instead
    fallback_windows: int = 0
    #: generations that gave the slot to a question and continued afterwards
    preemptions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_s": round(time.perf_counter() - self.started, 3),
            "windows": self.windows,
            "generations": self.generations,
            "generation_s": round(self.generation_s, 3),
            "queue_wait_s": round(self.queue_wait_s, 3),
            "fallback_windows": self.fallback_windows,
            "preemptions": self.preemptions,
        }


@dataclass(frozen=True)
class Piece:
    """A sentence (or a cut of a long one) of a page, with its offsets in the page text."""

    page: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Window:
    pieces: tuple[Piece, ...]

    @property
    def pages(self) -> tuple[int, ...]:
        return tuple(sorted({p.page for p in self.pieces}))

    def render(self) -> str:
        """The window's text with ``[Page N]`` wherever the page changes."""
        lines: list[str] = []
        page = None
        for piece in self.pieces:
            if piece.page != page:
                page = piece.page
                lines.append(f"\n[Page {page}]")
            lines.append(piece.text)
        return "\n".join(lines).strip()


@dataclass(frozen=True)
class _Doc:
    id: str
    name: str
    title: str
    collection_id: int
    pieces: tuple[Piece, ...]


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
        # KV of a generation interrupted for a question (one at a time), and of the
        # system-prompt prefix every window shares.
        self._kv = KVSessionCache(max_bytes=kv_cache_bytes)

    @classmethod
    def from_answers(cls, answers: Any, options: SummaryOptions | None = None) -> SummaryService:
        """Share the answer service's database, embedder, model and model slot."""
        return cls(
            answers.db, answers.embedder, answers.generator, slot=answers.slot, options=options
        )

    @property
    def mode(self) -> str:
        return "extractive" if self.generator is None else "generative"

    # -- entry points ---------------------------------------------------------------------

    def summarize_document(
        self,
        doc_id: str,
        *,
        control: JobControl | None = None,
        options: SummaryOptions | None = None,
    ) -> dict[str, Any]:
        control = control or JobControl()
        opts = options or self.options
        stats = _Stats()
        doc = self._load(doc_id)
        statements, windows = self._document(doc, opts.max_statements, opts, control, stats)
        result: dict[str, Any] = {
            "kind": "document",
            "title": f"Summary of {doc.title}",
            "document_id": doc.id,
            "document_name": doc.name,
            "collection_id": doc.collection_id,
            "model": self.mode,
            "label": self._label(),
            "statements": [s.to_dict() for s in statements],
            "windows": [{"pages": list(w.pages)} for w in windows],
            "timings": stats.to_dict(),
        }
        result["markdown"] = render_markdown(result)
        control.progress(1.0)
        return result

    def summarize_collection(
        self,
        collection_id: int,
        *,
        control: JobControl | None = None,
        options: SummaryOptions | None = None,
    ) -> dict[str, Any]:
        control = control or JobControl()
        opts = options or self.options
        stats = _Stats()
        name, ready, skipped = self._collection_documents(collection_id)
        if not ready:
            raise InvalidInput(f"collection {name!r} has no indexed documents to summarize")
        per_doc: list[tuple[_Doc, list[Statement]]] = []
        # The synthesis gets the last tenth of the progress bar.
        share = 0.9 / len(ready)
        for i, doc_id in enumerate(ready):
            control.check()
            try:
                doc = self._load(doc_id)
            except (NotFound, InvalidInput) as exc:  # deleted or re-queued meanwhile
                log.info("collection summary skips %s: %s", doc_id, exc)
                continue
            part = _Part(control, i * share, (i + 1) * share)
            statements, _ = self._document(doc, opts.statements_per_document, opts, part, stats)
            per_doc.append((doc, statements))
        everything = [s for _, statements in per_doc for s in statements]
        if self.generator is not None:
            synthesis = self._reduce(
                everything, opts.max_statements, opts, control, stats, name, force=True
            )
        else:
            synthesis = self._select(everything, opts.max_statements, control)
        result: dict[str, Any] = {
            "kind": "collection",
            "title": f"Summary of collection {name}",
            "collection_id": collection_id,
            "collection_name": name,
            "model": self.mode,
            "label": self._label(),
            "statements": [s.to_dict() for s in synthesis],
            "documents": [
                {
                    "document_id": doc.id,
                    "document_name": doc.name,
                    "statements": [s.to_dict() for s in statements],
                }
                for doc, statements in per_doc
            ],
            "skipped": skipped,
            "timings": stats.to_dict(),
        }
        result["markdown"] = render_markdown(result)
        control.progress(1.0)
        return result

    def _label(self) -> str:
        return EXTRACTIVE_LABEL if self.generator is None else GENERATIVE_LABEL

    # -- loading ----------------------------------------------------------------------------

    def _load(self, doc_id: str) -> _Doc:
        with self.db.session() as session:
            doc = session.get(Document, doc_id)
            if doc is None:
                raise NotFound(f"no document {doc_id!r}")
            if doc.status != DocStatus.INDEXED:
                raise InvalidInput(
                    f"{doc.original_name} is {doc.status}, not indexed: nothing to summarize yet"
                )
            pages = dict(
                session.execute(
                    select(PageText.number, PageText.text).where(PageText.document_id == doc.id)
                ).all()
            )
            chunks = session.execute(
                select(Chunk.page_start, Chunk.char_start, Chunk.text)
                .where(Chunk.document_id == doc.id)
                .order_by(Chunk.ordinal)
            ).all()
            name, title, coll = doc.original_name, doc.title or doc.original_name, doc.collection_id
        pieces = _sentences(_segments(pages, [(p, c, len(t)) for p, c, t in chunks]), pages)
        if not pieces:
            raise InvalidInput(f"{name} has no text to summarize")
        return _Doc(doc_id, name, title, coll, tuple(pieces))

    def _collection_documents(
        self, collection_id: int
    ) -> tuple[str, list[str], list[dict[str, Any]]]:
        with self.db.session() as session:
            coll = session.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection with id {collection_id}")
            docs = session.scalars(
                select(Document)
                .where(Document.collection_id == collection_id)
                .order_by(Document.original_name, Document.created_at)
            ).all()
            ready = [d.id for d in docs if d.status == DocStatus.INDEXED and d.chunk_count > 0]
            skipped = [
                {"document_id": d.id, "document_name": d.original_name, "status": d.status}
                for d in docs
                if d.id not in ready
            ]
            return coll.name, ready, skipped

    # -- one document -------------------------------------------------------------------------

    def _document(
        self,
        doc: _Doc,
        limit: int,
        opts: SummaryOptions,
        control: JobControl,
        stats: _Stats,
    ) -> tuple[list[Statement], list[Window]]:
        generative = self.generator is not None
        if generative:
            windows = self._token_windows(doc, opts)
        else:
            windows = _char_windows(doc.pieces, opts.extractive_window_chars)
        stats.windows += len(windows)
        # Quoting is cheap: a short document still gets up to ``limit`` statements.
        quote = max(opts.statements_per_window, -(-limit // max(len(windows), 1)))
        mapped: list[Statement] = []
        # Combining takes the last tenth of a document's progress.
        for i, window in enumerate(windows):
            control.check()
            if generative:
                mapped += self._map_window(doc, window, opts, control, stats)
            else:
                mapped += self._extract(doc, window, quote, control)
            control.progress((i + 1) / len(windows) * (0.9 if generative else 1.0))
        if generative:
            final = self._reduce(mapped, limit, opts, control, stats, doc.name)
        else:
            final = self._select(mapped, limit, control)
        control.progress(1.0)
        return final, windows

    # -- windows ------------------------------------------------------------------------------

    def _map_messages(self, doc: _Doc, text: str, n: int) -> list[ChatMessage]:
        instruction = (
            f'Summarize this excerpt of the document "{doc.name}" in at most {n} short '
            'statements. Write each statement on its own line starting with "- ", and end '
            "it with the page it comes from, like (p. 3) or (pp. 3-4). Pages are marked "
            "in the excerpt as [Page N]."
        )
        return [
            {"role": "system", "content": MAP_SYSTEM},
            {"role": "user", "content": f"{instruction}\n\nExcerpt:\n{text}"},
        ]

    def _budget(self, overhead: int, opts: SummaryOptions) -> tuple[int, int]:
        """(tokens of window text, tokens to generate) for a prompt of ``overhead`` tokens."""
        gen = self.generator
        assert gen is not None
        ctx = gen.context_length
        # Small test models have small windows: the answer's share shrinks with them.
        max_new = min(opts.max_new_tokens, ctx // 4)
        budget = min(opts.window_tokens, ctx - max_new - overhead - 8)
        if budget < 32:
            raise InvalidInput(
                f"the model's context ({ctx} tokens) is too small to summarize in windows"
            )
        return budget, max_new

    def _token_windows(self, doc: _Doc, opts: SummaryOptions) -> list[Window]:
        gen = self.generator
        assert gen is not None
        overhead = gen.count_tokens(self._map_messages(doc, "", opts.statements_per_window))
        budget, max_new = self._budget(overhead, opts)
        empty = gen.count_tokens([{"role": "user", "content": ""}])

        def tokens(text: str) -> int:
            return max(1, gen.count_tokens([{"role": "user", "content": text}]) - empty)

        marker = tokens("\n[Page 100]\n")
        pieces: list[tuple[Piece, int]] = []
        for piece in doc.pieces:
            for part in _fit(piece, budget - marker, tokens):
                pieces.append((part, tokens(part.text)))
        windows: list[Window] = []
        current: list[Piece] = []
        used = 0
        for piece, n in pieces:
            cost = n + 1 + (marker if not current or current[-1].page != piece.page else 0)
            if current and used + cost > budget:
                windows.append(Window(tuple(current)))
                current, used = [], 0
                cost = n + 1 + marker
            current.append(piece)
            used += cost
        if current:
            windows.append(Window(tuple(current)))
        # The per-piece counts are estimates (BPE merges across joins differ slightly):
        # the exact prompt decides, and a window over the limit hands pieces on.
        limit = gen.context_length - max_new
        out: list[Window] = []
        queue = list(windows)
        while queue:
            window = queue.pop(0)
            spill: list[Piece] = []
            msgs = self._map_messages(doc, window.render(), opts.statements_per_window)
            while len(window.pieces) > 1 and gen.count_tokens(msgs) > limit:
                spill.insert(0, window.pieces[-1])
                window = Window(window.pieces[:-1])
                msgs = self._map_messages(doc, window.render(), opts.statements_per_window)
            out.append(window)
            if spill:
                if queue:
                    queue[0] = Window((*spill, *queue[0].pieces))
                else:
                    queue.append(Window(tuple(spill)))
        return out

    def _map_window(
        self,
        doc: _Doc,
        window: Window,
        opts: SummaryOptions,
        control: JobControl,
        stats: _Stats,
    ) -> list[Statement]:
        gen = self.generator
        assert gen is not None
        msgs = self._map_messages(doc, window.render(), opts.statements_per_window)
        max_new = min(opts.max_new_tokens, gen.context_length - gen.count_tokens(msgs) - 1)
        output = self._generate(msgs, max_new, opts, control, stats)
        texts = [p.text for p in window.pieces]
        out: list[Statement] = []
        for parsed in parse_statements(output, opts.statements_per_window):
            pages = intersect(parsed.ranges, window.pages)
            if not pages:
                best = best_overlap(parsed.text, texts)
                pages = (window.pieces[best].page,) if best is not None else window.pages
            out.append(Statement(parsed.text, doc.id, doc.name, pages))
        if not out:
            # Nothing usable came back (an empty or garbled answer): quote the window's
            # central sentences instead, so no part of the document goes unsummarized.
            stats.fallback_windows += 1
            out = self._extract(doc, window, opts.statements_per_window, control)
        return out

    # -- combining ----------------------------------------------------------------------------

    def _reduce_messages(
        self, name: str, statements: Sequence[Statement], target: int, legend: _Legend
    ) -> list[ChatMessage]:
        if len(legend) > 1:
            docs = "\n".join(f"D{n} = {doc_name}" for n, doc_name in legend.values())
            instruction = (
                f'Here are statements from summaries of the documents of "{name}". Combine '
                f"them into at most {target} statements about the collection as a whole. "
                'Write each on its own line starting with "- ", and end each with the '
                "document and pages it rests on, like [D2, p. 3] or [D1, pp. 3-4].\n\n"
                f"Documents:\n{docs}"
            )
            lines = [
                f"- [D{legend[s.document_id][0]}] {s.text} ({format_pages(s.pages)})"
                for s in statements
            ]
        else:
            instruction = (
                f'Here are statements from a summary of "{name}", each ending with its '
                f"pages. Combine them into at most {target} statements that keep the most "
                'important points. Write each on its own line starting with "- ", and end '
                "each with the pages of the statements it combines, like (p. 3) or (pp. 3, 7)."
            )
            lines = [f"- {s.text} ({format_pages(s.pages)})" for s in statements]
        return [
            {"role": "system", "content": MAP_SYSTEM},
            {"role": "user", "content": instruction + "\n\nStatements:\n" + "\n".join(lines)},
        ]

    def _reduce(
        self,
        statements: list[Statement],
        limit: int,
        opts: SummaryOptions,
        control: JobControl,
        stats: _Stats,
        name: str,
        *,
        force: bool = False,
    ) -> list[Statement]:
        """Combine statements until at most ``limit`` remain (``force``: at least once)."""
        legend: _Legend = {}
        for s in statements:
            legend.setdefault(s.document_id, (len(legend) + 1, s.document_name))
        rounds = 0
        while statements and (len(statements) > limit or (force and rounds == 0)):
            rounds += 1
            if rounds > _MAX_REDUCE_ROUNDS:
                return self._select(statements, limit, control)
            try:
                groups = self._groups(statements, limit, opts, name, legend)
            except InvalidInput:  # the instructions alone fill a small model's context
                return self._select(statements, limit, control)
            if len(groups) > 1 and all(len(g) == 1 for g in groups):
                return self._select(statements, limit, control)  # one statement fills a prompt
            out: list[Statement] = []
            for group in groups:
                control.check()
                target = limit if len(groups) == 1 else max(1, min(limit, len(group) // 2))
                if len(group) <= target and not (force and len(groups) == 1):
                    out += group
                    continue
                out += self._reduce_group(group, target, opts, control, stats, name, legend)
            statements = out
        return statements[:limit]

    def _groups(
        self,
        statements: Sequence[Statement],
        limit: int,
        opts: SummaryOptions,
        name: str,
        legend: _Legend,
    ) -> list[list[Statement]]:
        """Consecutive runs of statements whose combining prompt fits the context."""
        gen = self.generator
        assert gen is not None
        overhead = gen.count_tokens(self._reduce_messages(name, [], limit, legend))
        budget, _ = self._budget(overhead, opts)
        groups: list[list[Statement]] = [[]]
        used = 0
        for s in statements:
            n = gen.count_tokens(self._reduce_messages(name, [s], limit, legend)) - overhead
            if groups[-1] and used + n > budget:
                groups.append([])
                used = 0
            groups[-1].append(s)
            used += n
        return groups

    def _reduce_group(
        self,
        group: list[Statement],
        target: int,
        opts: SummaryOptions,
        control: JobControl,
        stats: _Stats,
        name: str,
        legend: _Legend,
    ) -> list[Statement]:
        gen = self.generator
        assert gen is not None
        msgs = self._reduce_messages(name, group, target, legend)
        max_new = min(opts.max_new_tokens, gen.context_length - gen.count_tokens(msgs) - 1)
        if max_new < 16:
            return self._select(group, target, control)
        output = self._generate(msgs, max_new, opts, control, stats)
        numbers = {n: doc_id for doc_id, (n, _) in legend.items()}
        out: list[Statement] = []
        for parsed in parse_statements(output, target):
            statement = _attribute(parsed, group, numbers)
            if statement is not None:
                out.append(statement)
        return out or self._select(group, target, control)

    # -- the model -----------------------------------------------------------------------------

    def _join(self, control: JobControl) -> Turn:
        while True:
            control.check()
            try:
                return self.slot.join(BATCH, control.cancel)
            except Busy:
                # The queue is full of questions: they go first; try again shortly.
                control.cancel.wait(1.0)

    @contextmanager
    def _slot(self, control: JobControl) -> Iterator[float]:
        """Hold the model slot (BATCH priority) for one step; yields the seconds waited.

        Given back after every step: a question that queued meanwhile goes next.
        """
        queued = time.perf_counter()
        turn = self._join(control)
        try:
            for _ in turn.wait():
                control.poll()
            yield time.perf_counter() - queued
        finally:
            turn.release()

    def _generate(
        self,
        messages: list[ChatMessage],
        max_new: int,
        opts: SummaryOptions,
        control: JobControl,
        stats: _Stats,
    ) -> str:
        """One generation, giving the slot up early whenever a question waits.

        A window's prefill and decode can take a minute on a CPU; a question must not wait
        that long. When one queues, the generation stops at its next token, the slot goes
        to the question, and the summary continues afterwards from a KV snapshot of what it
        had (prompt + tokens so far), so almost nothing is computed twice.
        """
        gen = self.generator
        assert gen is not None
        key = f"summary-{uuid.uuid4().hex}"
        prompt: Prompt = messages
        produced: list[int] = []
        parts: list[str] = []
        try:
            while True:
                stop = threading.Event()
                finish: str | None = None
                with self._slot(control) as waited:
                    stats.queue_wait_s += waited
                    started = time.perf_counter()
                    for event in gen.stream(
                        prompt,
                        max_new_tokens=max(1, max_new - len(produced)),
                        temperature=opts.temperature,
                        top_p=opts.top_p,
                        top_k=opts.top_k,
                        seed=opts.seed,
                        cancel=stop,
                        session_cache=self._kv,
                        chat_id=key,
                    ):
                        parts.append(event.text)
                        produced.extend(event.token_ids)
                        finish = event.finish_reason or finish
                        control.poll()
                        if control.cancel.is_set() or self.slot.interactive_waiting:
                            stop.set()
                    stats.generation_s += time.perf_counter() - started
                control.check()  # a cancelled job ends here
                # "cancelled": we stopped it for a question queued in this process's slot;
                # "preempted": a generation worker stopped it for a question it was sent.
                if finish not in ("cancelled", "preempted") or len(produced) >= max_new:
                    break
                stats.preemptions += 1
                prompt = gen.encode(messages) + produced
        finally:
            self._kv.drop_chat(key)
        stats.generations += 1
        return "".join(parts)

    # -- without the model -------------------------------------------------------------------

    def _extract(self, doc: _Doc, window: Window, k: int, control: JobControl) -> list[Statement]:
        candidates = [p for p in window.pieces if _substantial(p.text)] or list(window.pieces)
        chosen = self._central([p.text for p in candidates], k, control)
        return [
            Statement(
                clean(candidates[i].text),
                doc.id,
                doc.name,
                (candidates[i].page,),
                Span(candidates[i].page, candidates[i].start, candidates[i].end),
            )
            for i in chosen
        ]

    def _select(
        self, statements: Sequence[Statement], k: int, control: JobControl
    ) -> list[Statement]:
        """The ``k`` most central statements, in their original order."""
        return [statements[i] for i in self._central([s.text for s in statements], k, control)]

    def _central(self, texts: Sequence[str], k: int, control: JobControl) -> list[int]:
        """Indices of the ``k`` texts closest to their centroid, near-duplicates skipped
        (neighbouring chunks overlap); evenly spread positions without an embedder."""
        if len(texts) <= k:
            return list(range(len(texts)))
        if self.embedder is None:
            return sorted({round(i * (len(texts) - 1) / max(k - 1, 1)) for i in range(k)})
        with self._slot(control):
            # Embedding is heavy CPU work too: it waits for questions like generation does.
            vecs = self.embedder.embed_passages(list(texts))
        centroid = vecs.mean(axis=0)
        centroid /= float(np.linalg.norm(centroid)) or 1.0
        order = np.argsort(-(vecs @ centroid), kind="stable")
        chosen: list[int] = []
        for i in order:
            if all(float(vecs[i] @ vecs[j]) < _NEAR_DUPLICATE for j in chosen):
                chosen.append(int(i))
            if len(chosen) == k:
                break
        for i in order:  # only near-duplicates left: fill up with them
            if len(chosen) == k:
                break
            if int(i) not in chosen:
                chosen.append(int(i))
        return sorted(chosen)


# -- helpers ----------------------------------------------------------------------------------


def _attribute(
    parsed: Parsed, group: Sequence[Statement], numbers: dict[int, str]
) -> Statement | None:
    """A combined statement with a citation taken from its inputs, or None if it has none.

    A cited document and pages count only if some input statement of that document holds
    those pages; otherwise the statement inherits the citation of the input it shares the
    most words with; with no such input it is dropped (nothing it says can be cited).
    """
    for number in parsed.documents or [0]:
        doc_id = numbers.get(number)
        inputs = [s for s in group if doc_id is None or s.document_id == doc_id]
        if doc_id is None and len({s.document_id for s in inputs}) != 1:
            continue  # pages alone cannot say which document of several is meant
        pages = intersect(parsed.ranges, {p for s in inputs for p in s.pages})
        if pages:
            first = inputs[0]
            return Statement(parsed.text, first.document_id, first.document_name, pages)
    best = best_overlap(parsed.text, [s.text for s in group])
    if best is None:
        return None
    source = group[best]
    return Statement(parsed.text, source.document_id, source.document_name, source.pages)


def _segments(
    pages: dict[int, str], chunks: Sequence[tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """The page text the chunks cover, in order, each character once: ``(page, start, end)``.

    Neighbouring chunks overlap by design (shared context for retrieval); a summary must
    not read the overlap twice. Chunks come in page order, so remembering how far each
    page has been covered is enough.
    """
    lengths = {n: len(t) for n, t in pages.items()}
    covered: dict[int, int] = {}
    out: list[tuple[int, int, int]] = []
    for page_start, char_start, length in chunks:
        try:
            spans = [
                (s.page, s.char_start, s.char_end)
                for s in chunk_span_to_pages(lengths, page_start, char_start, 0, length)
            ]
        except InvalidInput:  # a page row missing: keep what the chunk says about itself
            spans = [(page_start, char_start, char_start + length)]
        for page, start, end in spans:
            start = max(start, covered.get(page, 0))
            end = min(end, lengths.get(page, end))
            if end <= start:
                continue
            covered[page] = end
            if out and out[-1][0] == page and out[-1][2] == start:
                out[-1] = (page, out[-1][1], end)
            else:
                out.append((page, start, end))
    return out


def _sentences(segments: Sequence[tuple[int, int, int]], pages: dict[int, str]) -> list[Piece]:
    pieces: list[Piece] = []
    for page, start, end in segments:
        text = pages.get(page, "")[start:end]
        for s, e in split_sentences(text):
            pieces.append(Piece(page, start + s, start + e, text[s:e]))
    return pieces


def _fit(piece: Piece, budget: int, tokens: Callable[[str], int]) -> list[Piece]:
    """The piece, cut at spaces into parts of at most ``budget`` tokens each."""
    if tokens(piece.text) <= budget or len(piece.text) < 2:
        return [piece]
    middle = len(piece.text) // 2
    space = piece.text.rfind(" ", 0, middle)
    cut = space if space > 0 else middle
    left = Piece(piece.page, piece.start, piece.start + cut, piece.text[:cut])
    right_text = piece.text[cut:]
    shift = len(right_text) - len(right_text.lstrip())
    right = Piece(piece.page, piece.start + cut + shift, piece.end, right_text.lstrip())
    return _fit(left, budget, tokens) + _fit(right, budget, tokens)


def _char_windows(pieces: Sequence[Piece], size: int) -> list[Window]:
    windows: list[Window] = []
    current: list[Piece] = []
    used = 0
    for piece in pieces:
        if current and used + len(piece.text) > size:
            windows.append(Window(tuple(current)))
            current, used = [], 0
        current.append(piece)
        used += len(piece.text) + 1
    if current:
        windows.append(Window(tuple(current)))
    return windows


def _substantial(text: str) -> bool:
    """A sentence worth quoting: not a heading, a page number or a table cell."""
    if text.lstrip().startswith("#"):
        return False
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return len(text.split()) >= _MIN_WORDS or cjk >= 8


__all__ = [
    "JobControl",
    "Piece",
    "SummaryOptions",
    "SummaryService",
    "Window",
    "format_pages",
]
