"""Extractive mode: with no language model built, answer with the best-matching sentences.

Each retrieved passage is split into sentences; sentences are scored by their embedding
similarity to the question plus the share of the question's terms they contain, and the best
few are quoted with their source number. The result is labelled as extractive wherever it
is shown, and each quoted sentence keeps its span inside the chunk so the viewer can
highlight exactly that sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qa.retrieval.embedder import Embedder
from qa.retrieval.lexical import analyze
from qa.retrieval.retriever import Passage

EXTRACTIVE_LABEL = (
    "Extractive answer (no language model is configured): the passages below are quoted "
    "from your documents and best match the question."
)

# A sentence ends at . ! ? (followed by space/end) or at CJK 。！？, or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n\s*\n")
_MIN_CHARS = 12


@dataclass(frozen=True)
class Sentence:
    source: int  # 1-based source number
    start: int  # offsets into the passage's chunk text
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class ExtractiveAnswer:
    text: str
    sentences: list[Sentence]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence, whitespace trimmed, in order."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out: list[tuple[int, int]] = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def extractive_answer(
    question: str,
    sources: Sequence[Passage],
    embedder: Embedder,
    *,
    max_sentences: int = 3,
) -> ExtractiveAnswer:
    candidates: list[tuple[int, int, int, str]] = []
    for n, p in enumerate(sources, 1):
        for s, e in split_sentences(p.text):
            sentence = p.text[s:e]
            if len(sentence) >= _MIN_CHARS or len(split_sentences(p.text)) == 1:
                candidates.append((n, s, e, sentence))
    if not candidates:
        return ExtractiveAnswer(
            f"{EXTRACTIVE_LABEL}\n\nThe documents you may read contain nothing that matches.",
            [],
        )
    q_terms = set(analyze(question))
    q_vec = embedder.embed_query(question)
    vecs = embedder.embed_passages([c[3] for c in candidates])
    dense = vecs @ q_vec
    scored: list[Sentence] = []
    for (n, s, e, text), cos in zip(candidates, dense, strict=True):
        overlap = len(q_terms & set(analyze(text))) / len(q_terms) if q_terms else 0.0
        # The source rank breaks near-ties: retrieval already judged the whole passage.
        prior = 0.02 * (len(sources) - n) / max(len(sources), 1)
        scored.append(Sentence(n, s, e, text, float(cos) + 0.3 * overlap + prior))
    best: list[Sentence] = []
    for cand in sorted(scored, key=lambda x: -x.score):
        # Overlapping chunks repeat sentences (whole or cut): quote each thing once.
        if any(_same_text(cand.text, b.text) for b in best):
            continue
        best.append(cand)
        if len(best) == max_sentences:
            break
    best.sort(key=lambda x: (x.source, x.start))
    quoted = "\n\n".join(f"> {_one_line(b.text)} [{b.source}]" for b in best)
    return ExtractiveAnswer(f"{EXTRACTIVE_LABEL}\n\n{quoted}", best)


def _same_text(a: str, b: str) -> bool:
    a1, b1 = _one_line(a), _one_line(b)
    if a1 in b1 or b1 in a1:
        return True
    ta, tb = set(a1.split()), set(b1.split())
    return len(ta & tb) / max(len(ta | tb), 1) > 0.7


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


__all__ = ["EXTRACTIVE_LABEL", "ExtractiveAnswer", "Sentence", "extractive_answer"]
