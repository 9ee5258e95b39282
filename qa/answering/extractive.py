"""Extractive mode: with no language model built, answer with the best-matching sentences.

Each retrieved passage is split into sentences (headings and list items are units of their
own, so a heading never runs into the sentence after it); only sentences sharing a content
term with the question may be quoted, scored by their embedding similarity to the question
plus the share of the question's terms they contain, and the best few (at most three) are
quoted with their source number. The result is labelled as extractive wherever it
is shown, and each quoted sentence keeps its span inside the chunk so the viewer can
highlight exactly that sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qa.retrieval.embedder import Embedder
from qa.retrieval.language import question_language
from qa.retrieval.lexical import analyze
from qa.retrieval.retriever import Passage

#: the first line of an extractive answer, in the question's language (like the decline)
EXTRACTIVE_LABELS = {
    "en": (
        "Extractive answer (no language model is configured): the passages below are quoted "
        "from your documents and best match the question."
    ),
    "zh": "摘录式回答（未配置语言模型）：以下段落引自你的文档，与问题最为匹配。",
}
EXTRACTIVE_LABEL = EXTRACTIVE_LABELS["en"]
_NOTHING_MATCHES = {
    "en": "The documents you may read contain nothing that matches.",
    "zh": "你可以阅读的文档中没有匹配的内容。",
}

# A line that stands alone: a Markdown heading or a list item (bullet or number).
_HEADING_MD = re.compile(r"#{1,6}\s")
_LIST_ITEM = re.compile(r"(?:[-*+•·▪◦]|\d{1,3}[.)]|[a-z][.)])\s")
# A sentence ends at . ! ? followed by whitespace, or right after a Chinese 。！？；.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+|(?<=[。！？；])[”’」』）]*\s*")
# Words whose trailing dot is not a sentence end ("e.g. a train", "Dr. Smith").
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf approx no nos dr mr mrs ms prof st fig incl excl resp ca ltd inc".split()
)
_ABBREV_BEFORE = re.compile(r"([A-Za-z]+(?:\.[A-Za-z]+)*)\.$")
_TERMINAL = tuple(".!?:;。！？；：")
#: a line this short, with no closing punctuation, after a finished sentence is a heading
_HEADING_WORDS = 8
_HEADING_CHARS = 60
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
    """``(start, end)`` of each sentence, whitespace trimmed, in order.

    Headings and list items are units of their own; a paragraph's wrapped lines are joined.
    """
    return [(s, e) for s, e, _ in sentence_units(text)]


def sentence_units(text: str) -> list[tuple[int, int, bool]]:
    """``(start, end, is_heading)`` of each sentence, heading or list item of ``text``."""
    out: list[tuple[int, int, bool]] = []
    for start, end, heading in _blocks(text):
        if heading:
            out.append((start, end, True))
        else:
            out += [(s, e, False) for s, e in _split_block(text, start, end)]
    return out


def _lines(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each non-blank line, whitespace trimmed; (-1, -1) for blank ones."""
    out: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        s, e = pos, pos + len(line)
        pos = e + 1
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        out.append((s, e) if e > s else (-1, -1))
    return out


def _is_heading(line: str, after_sentence_end: bool, next_line: str) -> bool:
    if _HEADING_MD.match(line):
        return True
    # PDF pages lose the markup: a short line without sentence punctuation between a
    # finished sentence and a capitalised (or CJK) line is a heading; a line followed by
    # a lower-case one is a sentence wrapped at the page width.
    return (
        after_sentence_end
        and bool(next_line)
        and not next_line[0].islower()
        and not line.endswith(_TERMINAL)
        and not _SENTENCE_END.search(line)
        and len(line.split()) <= _HEADING_WORDS
        and len(line) <= _HEADING_CHARS
        and not _LIST_ITEM.match(line)
    )


def _blocks(text: str) -> list[tuple[int, int, bool]]:
    """Headings, list items and paragraphs as ``(start, end, is_heading)``."""
    lines = _lines(text)
    blocks: list[tuple[int, int, bool]] = []
    open_block: list[int] | None = None  # [start, end] of the paragraph being joined
    ended = True  # the text so far ends a sentence (or nothing came yet)
    for i, (s, e) in enumerate(lines):
        if s < 0:
            open_block, ended = None, True
            continue
        line = text[s:e]
        following = lines[i + 1] if i + 1 < len(lines) else (-1, -1)
        heading = _is_heading(line, ended, text[following[0] : following[1]])
        if heading:
            blocks.append((s, e, True))
            open_block = None
        elif _LIST_ITEM.match(line) or open_block is None:
            marker = _LIST_ITEM.match(line)
            # The bullet is not part of the sentence the viewer highlights.
            s = _trim(text, s + marker.end(), e)[0] if marker else s
            open_block = [s, e]
            blocks.append((s, e, False))
        else:  # a wrapped line continues its paragraph or list item
            open_block[1] = e
            blocks[-1] = (open_block[0], e, False)
        ended = heading or line.endswith(_TERMINAL)
    return blocks


def _split_block(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentences of ``text[start:end]``; a dot after an abbreviation does not end one."""
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _SENTENCE_END.finditer(text, start, end):
        before = _ABBREV_BEFORE.search(text, pos, m.start())
        if before and before.group(1).casefold() in _ABBREVIATIONS:
            continue
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    return [_trim(text, s, e) for s, e in spans if text[s:e].strip()]


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def extractive_answer(
    question: str,
    sources: Sequence[Passage],
    embedder: Embedder,
    *,
    max_sentences: int = 3,
) -> ExtractiveAnswer:
    q_terms = set(analyze(question))
    candidates = _candidates(sources, q_terms)
    language = question_language(question)
    label = EXTRACTIVE_LABELS[language]
    if not candidates:
        return ExtractiveAnswer(f"{label}\n\n{_NOTHING_MATCHES[language]}", [])
    q_vec = embedder.embed_query(question)
    vecs = embedder.embed_passages([c[3] for c in candidates])
    dense = vecs @ q_vec
    scored: list[Sentence] = []
    for (n, s, e, text), cos in zip(candidates, dense, strict=True):
        overlap = len(q_terms & set(analyze(text))) / len(q_terms)
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
    quoted = "\n\n".join(f"> {_one_line(b.text)} [{b.source}]" for b in best)
    return ExtractiveAnswer(f"{label}\n\n{quoted}", best)


def _candidates(sources: Sequence[Passage], q_terms: set[str]) -> list[tuple[int, int, int, str]]:
    """``(source, start, end, text)`` of each sentence that may be quoted.

    Headings are never quoted (they are labels, not statements), and a sentence sharing no
    content term with the question is off-topic however close its embedding is.
    """
    out: list[tuple[int, int, int, str]] = []
    for n, p in enumerate(sources, 1):
        units = sentence_units(p.text)
        for s, e, heading in units:
            sentence = p.text[s:e]
            if heading or not q_terms & set(analyze(sentence)):
                continue
            if len(sentence) >= _MIN_CHARS or len(units) == 1:
                out.append((n, s, e, sentence))
    return out


def _same_text(a: str, b: str) -> bool:
    a1, b1 = _one_line(a), _one_line(b)
    if a1 in b1 or b1 in a1:
        return True
    ta, tb = set(a1.split()), set(b1.split())
    return len(ta & tb) / max(len(ta | tb), 1) > 0.7


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


__all__ = [
    "EXTRACTIVE_LABEL",
    "EXTRACTIVE_LABELS",
    "ExtractiveAnswer",
    "Sentence",
    "extractive_answer",
    "sentence_units",
    "split_sentences",
]
