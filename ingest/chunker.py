"""Split a parsed document into token-sized, heading-aware chunks with exact char spans.

Contract (what the portal and the citations rely on): for every ``ChunkDraft`` ``c``::

    c.text == locate(pages, c)

that is, ``page(c.page_start).text[c.char_start:]`` + ``PAGE_JOINER`` + the full text of
every page in between (each followed by ``PAGE_JOINER``) + ``page(c.page_end).text[:c.char_end]``,
or simply ``page.text[c.char_start:c.char_end]`` when the chunk sits on one page. Chunk text
is never edited: whitespace is trimmed by moving the offsets, so a span always highlights
exactly what was embedded.

How chunks are cut:

* Every page is tokenized once with the embedding model's tokenizer; all decisions work
  on the resulting token offsets, so CJK text without spaces chunks like any other.
* Headings split the document into sections; a chunk never starts in the middle of one
  section and runs into the next, except that sections smaller than ``max_tokens // 10``
  (typically a heading followed directly by a sub-heading) are glued to their neighbour
  rather than becoming useless fragments.
* Inside a section a window of ``max_tokens`` tokens slides forward. Its end is placed at
  the best boundary in the last 30 % of the window: paragraph (blank line or page end) >
  sentence (``. ! ?`` followed by space, or ``。！？``) > any word boundary. The next chunk
  starts ``overlap`` tokens before the end, moved forward to a word start (preferably a
  sentence start), so neighbouring chunks share context.
* The final text is re-counted with the tokenizer; ``token_count <= max_tokens`` always holds.
"""

from __future__ import annotations

import bisect
import itertools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.document import Page
from qa.answering.spans import PAGE_JOINER
from qa.errors import InvalidInput
from qa.retrieval.tokens import Tokenizer

# Boundary classes for the gap after a token (higher = better place to end a chunk).
_INSIDE_WORD = 0
_WORD = 1
_SENTENCE = 2
_PARAGRAPH = 3

_SENTENCE_END = frozenset(".!?。！？")
_CJK_SENTENCE_END = frozenset("。！？")
_CLOSERS = frozenset("\"')]}’”」』）")
_WORD_JOINERS = frozenset("'’-_")

# Share of the window (from its end) searched for a good boundary.
_END_SEARCH_SHARE = 0.3


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it gets an id: text plus where it came from."""

    ordinal: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    heading_path: tuple[str, ...]
    token_count: int


def locate(pages: Sequence[Page], chunk: ChunkDraft) -> str:
    """Rebuild a chunk's text from the pages and its span (see the module contract)."""
    index = {p.number: i for i, p in enumerate(pages)}
    try:
        first, last = index[chunk.page_start], index[chunk.page_end]
    except KeyError as exc:
        raise InvalidInput(f"chunk refers to a page that does not exist: {exc}") from None
    if first == last:
        return pages[first].text[chunk.char_start : chunk.char_end]
    parts = [pages[first].text[chunk.char_start :]]
    parts.extend(p.text for p in pages[first + 1 : last])
    parts.append(pages[last].text[: chunk.char_end])
    return PAGE_JOINER.join(parts)


def _is_cjk(ch: str) -> bool:
    """Scripts written without spaces: any boundary between their characters is a word break."""
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF  # radicals, CJK punctuation, kana, CJK unified ideographs
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
        or 0x20000 <= o <= 0x3FFFF  # ideograph extensions B..
    )


def _is_wordish(ch: str) -> bool:
    return ch.isalnum() or ch in _WORD_JOINERS or unicodedata.category(ch) == "Mn"


def _trim_token(text: str, span: tuple[int, int]) -> tuple[int, int] | None:
    s, e = span
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e) if e > s else None


class _Stream:
    """All non-blank tokens of the document in order, with the boundary class after each."""

    def __init__(self, pages: Sequence[Page], tokenizer: Tokenizer) -> None:
        self.page: list[int] = []  # page index (not number) of each token
        self.start: list[int] = []
        self.end: list[int] = []
        self.page_first: list[int] = []  # index of the first token of each page
        for pi, page in enumerate(pages):
            self.page_first.append(len(self.start))
            text = page.text
            offsets = tokenizer.token_offsets(text)
            if not offsets:
                continue
            if any(e <= s or text[s].isspace() or text[e - 1].isspace() for s, e in offsets):
                # Some tokenizers fold surrounding spaces into a token: trim them so chunk
                # offsets never start or end on whitespace, and drop blank tokens.
                offsets = [t for t in map(_trim_token, [text] * len(offsets), offsets) if t]
                if not offsets:
                    continue
            starts, ends = zip(*offsets, strict=True)
            self.start.extend(starts)
            self.end.extend(ends)
            self.page.extend([pi] * len(starts))
        self.page_first.append(len(self.start))
        self.after = self._classify(pages)

    def __len__(self) -> int:
        return len(self.start)

    def _classify(self, pages: Sequence[Page]) -> list[int]:
        n = len(self.start)
        out = [_PARAGRAPH] * n
        page, start, end = self.page, self.start, self.end
        for j in range(n - 1):
            if page[j] != page[j + 1]:
                continue  # page end: as good as a paragraph break
            text = pages[page[j]].text
            e, ns = end[j], start[j + 1]
            last = text[e - 1]
            if ns > e:
                if ns > e + 1 and text.count("\n", e, ns) >= 2:
                    out[j] = _PARAGRAPH
                elif last in _SENTENCE_END or (
                    last in _CLOSERS and e >= 2 and text[e - 2] in _SENTENCE_END
                ):
                    out[j] = _SENTENCE
                else:
                    out[j] = _WORD
            elif last in _CJK_SENTENCE_END:
                out[j] = _SENTENCE
            elif ns < e:
                out[j] = _INSIDE_WORD  # tokens share characters (byte-level BPE)
            else:
                nxt = text[ns]
                if _is_cjk(last) or _is_cjk(nxt):
                    out[j] = _WORD
                elif _is_wordish(last) and _is_wordish(nxt):
                    out[j] = _INSIDE_WORD
                else:
                    out[j] = _WORD
        return out

    def token_at_or_after(self, page_index: int, offset: int) -> int:
        lo, hi = self.page_first[page_index], self.page_first[page_index + 1]
        return bisect.bisect_left(self.start, offset, lo, hi)


def _sections(pages: Sequence[Page], stream: _Stream) -> tuple[list[int], list[tuple[str, ...]]]:
    """Token index where each section starts, and the heading path in force there.

    A new page starts a section too: a citation names one page, so a chunk should not run
    across a page boundary unless its page is too small to stand alone (see ``_units``).
    """
    starts: list[int] = [0]
    paths: list[tuple[str, ...]] = [()]
    stack: list[tuple[int, str]] = []
    for pi, page in enumerate(pages):
        first = stream.page_first[pi]
        if pi > 0 and first > starts[-1] and first < len(stream):
            starts.append(first)
            paths.append(tuple(title for _, title in stack))
        for h in sorted(page.headings, key=lambda h: h.offset):
            while stack and stack[-1][0] >= h.level:
                stack.pop()
            stack.append((h.level, h.title))
            tok = stream.token_at_or_after(pi, max(0, min(h.offset, len(page.text))))
            path = tuple(title for _, title in stack)
            if tok == starts[-1]:
                paths[-1] = path  # several headings before the same token: the last wins
            else:
                starts.append(tok)
                paths.append(path)
    return starts, paths


def _units(starts: list[int], total: int, min_tokens: int, max_tokens: int) -> list[range]:
    """Token ranges chunked independently: sections, with tiny ones glued to a neighbour."""
    bounds = [*starts, total]
    units: list[range] = []
    pending: int | None = None
    for i in range(len(starts)):
        a = starts[i] if pending is None else pending
        b = bounds[i + 1]
        if b <= a:
            continue
        last = i == len(starts) - 1
        if b - a < min_tokens and not last:
            pending = a  # merge forward into the next section
            continue
        pending = None
        if b - a < min_tokens and units and b - units[-1].start <= max_tokens:
            units[-1] = range(units[-1].start, b)  # tiny tail fits into the previous chunk
        else:
            units.append(range(a, b))
    return units


class _Chunker:
    def __init__(
        self, pages: Sequence[Page], tokenizer: Tokenizer, max_tokens: int, overlap: int
    ) -> None:
        self.pages = pages
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.min_tokens = max(1, max_tokens // 10)
        self.stream = _Stream(pages, tokenizer)

    def _is_start(self, i: int) -> bool:
        """A chunk may start at token ``i`` without cutting a word in two."""
        return i == 0 or self.stream.after[i - 1] != _INSIDE_WORD

    def _pick_end(self, s: int, floor: int, b: int) -> int:
        """Exclusive end token for a chunk starting at ``s`` in a unit ending at ``b``."""
        hard = s + self.max_tokens
        if b - hard < self.min_tokens:
            # Leave a tail big enough to be worth a chunk of its own.
            hard = max(b - self.min_tokens, floor)
        lo = max(floor, s + 1, hard - int(self.max_tokens * _END_SEARCH_SHARE))
        after = self.stream.after
        best, best_class = hard, -1
        for e in range(hard, lo - 1, -1):
            c = after[e - 1]
            if c > best_class:
                best, best_class = e, c
                if c == _PARAGRAPH:
                    break
        if best_class == _INSIDE_WORD:
            # No word break near the end: take the latest one anywhere in the window.
            for e in range(lo - 1, max(floor, s + 1) - 1, -1):
                if after[e - 1] != _INSIDE_WORD:
                    return e
            return hard
        return best

    def _next_start(self, s: int, e: int) -> int:
        if self.overlap == 0:
            return e
        target = max(s + 1, e - self.overlap)
        after = self.stream.after
        # Prefer a sentence start close after the target, then any word start.
        for i in range(target, min(e, target + max(1, self.overlap // 2))):
            if after[i - 1] >= _SENTENCE:
                return i
        for i in range(target, e):
            if self._is_start(i):
                return i
        return e

    def spans(self, unit: range) -> list[tuple[int, int, int]]:
        """``(start, end, token_count)`` of each chunk of ``unit``; ends are exclusive."""
        out: list[tuple[int, int, int]] = []
        s, b, prev_end = unit.start, unit.stop, unit.start
        while True:
            e = b if b - s <= self.max_tokens else self._pick_end(s, prev_end + 1, b)
            e, count = self._fit(s, e)
            out.append((s, e, count))
            if e >= b:
                return out
            s, prev_end = self._next_start(s, e), e

    def _fit(self, s: int, e: int) -> tuple[int, int]:
        """Shrink ``e`` until the chunk text itself counts at most ``max_tokens`` tokens.

        Re-tokenizing a slice can differ from the page's tokenization at the edges (a word
        cut by a forced split, a tokenizer that merges across the page joiner).
        """
        count = self.tokenizer.count(self.text_of(s, e)[4])
        while count > self.max_tokens and e - s > 1:
            e = max(s + 1, e - (count - self.max_tokens))
            count = self.tokenizer.count(self.text_of(s, e)[4])
        return e, count

    def text_of(self, s: int, e: int) -> tuple[int, int, int, int, str]:
        st = self.stream
        pa, pb = st.page[s], st.page[e - 1]
        cs, ce = st.start[s], st.end[e - 1]
        if pa == pb:
            text = self.pages[pa].text[cs:ce]
        else:
            parts = [self.pages[pa].text[cs:]]
            parts.extend(p.text for p in self.pages[pa + 1 : pb])
            parts.append(self.pages[pb].text[:ce])
            text = PAGE_JOINER.join(parts)
        return pa, pb, cs, ce, text

    def run(self) -> list[ChunkDraft]:
        stream = self.stream
        if not len(stream):
            return []
        starts, paths = _sections(self.pages, stream)
        drafts: list[ChunkDraft] = []
        for unit in _units(starts, len(stream), self.min_tokens, self.max_tokens):
            for s, e, count in self.spans(unit):
                pa, pb, cs, ce, text = self.text_of(s, e)
                path = paths[bisect.bisect_right(starts, s) - 1]
                drafts.append(
                    ChunkDraft(
                        ordinal=len(drafts),
                        text=text,
                        page_start=self.pages[pa].number,
                        page_end=self.pages[pb].number,
                        char_start=cs,
                        char_end=ce,
                        heading_path=path,
                        token_count=count,
                    )
                )
        return drafts


def chunk_document(
    pages: Sequence[Page], tokenizer: Tokenizer, max_tokens: int, overlap: int
) -> list[ChunkDraft]:
    """Cut ``pages`` into chunks of at most ``max_tokens`` tokens (see the module docstring)."""
    if max_tokens < 1:
        raise InvalidInput(f"max_tokens must be positive, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise InvalidInput(f"overlap must be in [0, {max_tokens}), got {overlap}")
    numbers = [p.number for p in pages]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise InvalidInput("page numbers must be strictly increasing")
    return _Chunker(pages, tokenizer, max_tokens, overlap).run()
