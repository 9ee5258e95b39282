"""The statements a summary ends with: their citations, the most central ones, the result.

Page numbers are never taken on trust. A statement made from a window keeps a cited page
only if it belongs to the window (``window_pages``); a statement combined from others keeps
a cited document and pages only if the statements it combines hold them (``attribute``).
Otherwise the statement is attributed to the passage it shares the most words with, or to
its whole window, so citations stay right even when the model ignores the instruction or
invents page numbers.

With no model the summary is extractive (``Extractive``): per window the sentences
closest to the window's centroid (embeddings), then the most central of those; labelled as
such. The model's map/reduce falls back on the same selection whenever its output is
unusable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qa.llm.resumable import Control, hold
from qa.llm.slot import ModelSlot
from qa.retrieval.embedder import Embedder
from qa.summaries.control import Run
from qa.summaries.options import SummaryOptions
from qa.summaries.text import (
    EXTRACTIVE_LABEL,
    Parsed,
    Span,
    Statement,
    best_overlap,
    clean,
    intersect,
    render_markdown,
)
from qa.summaries.windowing import DocumentText, Piece, Window, char_windows

_MIN_WORDS = 4
_NEAR_DUPLICATE = 0.92

# -- citations ----------------------------------------------------------------------------------


def window_pages(parsed: Parsed, window: Window) -> tuple[int, ...]:
    """The pages a statement made from ``window`` rests on.

    The pages it cites that are the window's; else the page of the sentence it shares the
    most words with; else the whole window.
    """
    pages = intersect(parsed.ranges, window.pages)
    if pages:
        return pages
    best = best_overlap(parsed.text, [p.text for p in window.pieces])
    return (window.pieces[best].page,) if best is not None else window.pages


def attribute(
    parsed: Parsed, group: Sequence[Statement], numbers: dict[int, str]
) -> Statement | None:
    """A combined statement with a citation taken from its inputs, or None if it has none.

    A cited document and pages count only if some input statement of that document holds
    those pages; otherwise the statement inherits the citation of the input it shares the
    most words with; with no such input it is dropped (nothing it says can be cited).
    """
    cited = _as_cited(parsed, group, numbers)
    if cited is not None:
        return cited
    best = best_overlap(parsed.text, [s.text for s in group])
    if best is None:
        return None
    source = group[best]
    return Statement(parsed.text, source.document_id, source.document_name, source.pages)


def _as_cited(
    parsed: Parsed, group: Sequence[Statement], numbers: dict[int, str]
) -> Statement | None:
    """The statement with the first document and pages it cites that its inputs hold."""
    for number in parsed.documents or [0]:
        doc_id = numbers.get(number)
        inputs = [s for s in group if doc_id is None or s.document_id == doc_id]
        if doc_id is None and len({s.document_id for s in inputs}) != 1:
            continue  # pages alone cannot say which document of several is meant
        pages = intersect(parsed.ranges, {p for s in inputs for p in s.pages})
        if pages:
            first = inputs[0]
            return Statement(parsed.text, first.document_id, first.document_name, pages)
    return None


# -- centroid selection --------------------------------------------------------------------------


class Extractive:
    """Statements quoted, not written: the sentences closest to their centroid."""

    mode = "extractive"
    label = EXTRACTIVE_LABEL
    #: quoting a window is the whole work: selecting the final few is almost free
    map_share = 1.0

    def __init__(self, embedder: Embedder | None, slot: ModelSlot) -> None:
        self.embedder = embedder
        self.slot = slot

    def windows(self, doc: DocumentText, opts: SummaryOptions) -> list[Window]:
        return char_windows(doc.pieces, opts.extractive_window_chars)

    def per_window(self, limit: int, windows: int, opts: SummaryOptions) -> int:
        # Quoting is cheap: a short document still gets up to ``limit`` statements.
        return max(opts.statements_per_window, -(-limit // max(windows, 1)))

    def map(self, doc: DocumentText, window: Window, k: int, run: Run) -> list[Statement]:
        """The ``k`` most central sentences of the window, quoted with their place."""
        candidates = [p for p in window.pieces if substantial(p.text)] or list(window.pieces)
        chosen = self.central([p.text for p in candidates], k, run.control)
        return [_quote(doc, candidates[i]) for i in chosen]

    def combine(
        self, statements: list[Statement], limit: int, run: Run, name: str, *, force: bool = False
    ) -> list[Statement]:
        """The ``limit`` most central statements (nothing to combine without a model)."""
        return self.select(statements, limit, run.control)

    def select(self, statements: Sequence[Statement], k: int, control: Control) -> list[Statement]:
        """The ``k`` most central statements, in their original order."""
        return [statements[i] for i in self.central([s.text for s in statements], k, control)]

    def central(self, texts: Sequence[str], k: int, control: Control) -> list[int]:
        """Indices of the ``k`` texts closest to their centroid, near-duplicates skipped
        (neighbouring chunks overlap); evenly spread positions without an embedder."""
        if len(texts) <= k:
            return list(range(len(texts)))
        if self.embedder is None:
            return sorted({round(i * (len(texts) - 1) / max(k - 1, 1)) for i in range(k)})
        with hold(self.slot, control):
            # Embedding is heavy CPU work too: it waits for questions like generation does.
            vecs = self.embedder.embed_passages(list(texts))
        return _most_central(vecs, k)


def _most_central(vecs: np.ndarray, k: int) -> list[int]:
    centroid = vecs.mean(axis=0)
    centroid /= float(np.linalg.norm(centroid)) or 1.0
    order = [int(i) for i in np.argsort(-(vecs @ centroid), kind="stable")]
    chosen: list[int] = []
    for i in order:
        if all(float(vecs[i] @ vecs[j]) < _NEAR_DUPLICATE for j in chosen):
            chosen.append(i)
        if len(chosen) == k:
            return sorted(chosen)
    # Only near-duplicates left: fill up with them, most central first.
    chosen += [i for i in order if i not in chosen][: k - len(chosen)]
    return sorted(chosen)


def _quote(doc: DocumentText, piece: Piece) -> Statement:
    span = Span(piece.page, piece.start, piece.end)
    return Statement(clean(piece.text), doc.id, doc.name, (piece.page,), span)


def substantial(text: str) -> bool:
    """A sentence worth quoting: not a heading, a page number or a table cell."""
    if text.lstrip().startswith("#"):
        return False
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return len(text.split()) >= _MIN_WORDS or cjk >= 8


# -- the result -----------------------------------------------------------------------------------


def document_result(
    doc: DocumentText,
    made_by: dict[str, str],
    statements: Sequence[Statement],
    windows: Sequence[Window],
    timings: dict[str, Any],
) -> dict[str, Any]:
    """What a document summary job stores and every client shows (Markdown included)."""
    return _with_markdown(
        {
            "kind": "document",
            "title": f"Summary of {doc.title}",
            #: what the summary is of: pages title it in their own language from this
            "subject": doc.title,
            "document_id": doc.id,
            "document_name": doc.name,
            "collection_id": doc.collection_id,
            **made_by,
            "statements": [s.to_dict() for s in statements],
            "windows": [{"pages": list(w.pages)} for w in windows],
            "timings": timings,
        }
    )


def collection_result(
    collection: tuple[int, str],
    made_by: dict[str, str],
    synthesis: Sequence[Statement],
    per_document: Sequence[tuple[DocumentText, Sequence[Statement]]],
    skipped: list[dict[str, Any]],
    timings: dict[str, Any],
) -> dict[str, Any]:
    """What a collection summary job stores: the synthesis, then each document's own."""
    collection_id, name = collection
    return _with_markdown(
        {
            "kind": "collection",
            "title": f"Summary of collection {name}",
            "collection_id": collection_id,
            "collection_name": name,
            **made_by,
            "statements": [s.to_dict() for s in synthesis],
            "documents": [_document_part(doc, statements) for doc, statements in per_document],
            "skipped": skipped,
            "timings": timings,
        }
    )


def _document_part(doc: DocumentText, statements: Sequence[Statement]) -> dict[str, Any]:
    return {
        "document_id": doc.id,
        "document_name": doc.name,
        "statements": [s.to_dict() for s in statements],
    }


def _with_markdown(result: dict[str, Any]) -> dict[str, Any]:
    result["markdown"] = render_markdown(result)
    return result
