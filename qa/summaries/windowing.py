"""How a document's text is cut into windows that a prompt can carry.

    chunks in page order -> the page text they cover, each character once (chunks overlap)
                         -> sentences with their page and offsets (``Piece``)
                         -> windows: runs of sentences under a budget, pages marked

With a model the budget is in tokens: what the context leaves once the prompt's
instructions and the answer are taken out, capped by ``window_tokens`` (prefill time on a
CPU grows with it). Without one it is in characters, since sentences are only scored.
Every window knows the pages its sentences came from: that is what lets the summary check
the pages a statement cites (``qa.summaries.synthesis``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qa.answering.extractive import split_sentences
from qa.answering.spans import chunk_span_to_pages
from qa.errors import InvalidInput
from qa.llm.generate import ChatMessage, Generator
from qa.messages import N_
from qa.summaries.options import SummaryOptions

#: a window's text -> the whole prompt that will carry it
PromptFor = Callable[[str], list[ChatMessage]]
#: (page, start, end) of page text
_Segment = tuple[int, int, int]


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
class DocumentText:
    """A document as a summary reads it: its names and its sentences in reading order."""

    id: str
    name: str
    title: str
    collection_id: int
    pieces: tuple[Piece, ...]


def read_pieces(
    pages: Mapping[int, str], chunks: Sequence[tuple[int, int, int]]
) -> tuple[Piece, ...]:
    """The sentences of the page text that ``(page_start, char_start, length)`` chunks cover."""
    pieces: list[Piece] = []
    for page, start, end in _segments(pages, chunks):
        text = pages.get(page, "")[start:end]
        pieces += [Piece(page, start + s, start + e, text[s:e]) for s, e in split_sentences(text)]
    return tuple(pieces)


def _segments(pages: Mapping[int, str], chunks: Sequence[tuple[int, int, int]]) -> list[_Segment]:
    """The page text the chunks cover, in order, each character once.

    Neighbouring chunks overlap by design (shared context for retrieval); a summary must
    not read the overlap twice. Chunks come in page order, so remembering how far each
    page has been covered is enough.
    """
    lengths = {n: len(t) for n, t in pages.items()}
    covered: dict[int, int] = {}
    out: list[_Segment] = []
    for page, start, end in (s for chunk in chunks for s in _chunk_spans(lengths, chunk)):
        start = max(start, covered.get(page, 0))
        end = min(end, lengths.get(page, end))
        if end > start:
            covered[page] = end
            _extend(out, (page, start, end))
    return out


def _chunk_spans(lengths: dict[int, int], chunk: tuple[int, int, int]) -> list[_Segment]:
    page_start, char_start, length = chunk
    try:
        spans = chunk_span_to_pages(lengths, page_start, char_start, 0, length)
    except InvalidInput:  # a page row missing: keep what the chunk says about itself
        return [(page_start, char_start, char_start + length)]
    return [(s.page, s.char_start, s.char_end) for s in spans]


def _extend(segments: list[_Segment], segment: _Segment) -> None:
    """Append, merging with the last segment when it ends where this one starts."""
    page, start, end = segment
    if segments and segments[-1][0] == page and segments[-1][2] == start:
        segments[-1] = (page, segments[-1][1], end)
    else:
        segments.append(segment)


# -- without a model: characters ---------------------------------------------------------------


def char_windows(pieces: Sequence[Piece], size: int) -> list[Window]:
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


# -- with a model: tokens ------------------------------------------------------------------------


def token_budget(gen: Generator, overhead: int, opts: SummaryOptions) -> tuple[int, int]:
    """(tokens of text, tokens to generate) for a prompt of ``overhead`` tokens."""
    ctx = gen.context_length
    # Small test models have small windows: the answer's share shrinks with them.
    max_new = min(opts.max_new_tokens, ctx // 4)
    budget = min(opts.window_tokens, ctx - max_new - overhead - 8)
    if budget < 32:
        raise InvalidInput(
            N_(
                "the model's context (%(tokens)s tokens) is too small to summarize in windows",
                tokens=ctx,
            )
        )
    return budget, max_new


def token_windows(
    gen: Generator, pieces: Sequence[Piece], prompt: PromptFor, opts: SummaryOptions
) -> list[Window]:
    """Windows whose prompt (``prompt`` of their text) leaves room for the answer."""
    budget, max_new = token_budget(gen, gen.count_tokens(prompt("")), opts)
    tokens = _token_counter(gen)
    marker = tokens("\n[Page 100]\n")
    sized = [
        (part, tokens(part.text))
        for piece in pieces
        for part in _fit(piece, budget - marker, tokens)
    ]
    # The per-piece counts are estimates (BPE merges across joins differ slightly):
    # the exact prompt decides, and a window over the limit hands pieces on.
    limit = gen.context_length - max_new
    return _settle(
        _pack(sized, budget, marker), lambda text: gen.count_tokens(prompt(text)) <= limit
    )


def _token_counter(gen: Generator) -> Callable[[str], int]:
    """Tokens a text adds to a prompt (the chat template around it left out), at least 1."""
    empty = gen.count_tokens([{"role": "user", "content": ""}])

    def tokens(text: str) -> int:
        return max(1, gen.count_tokens([{"role": "user", "content": text}]) - empty)

    return tokens


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


def _pack(sized: Sequence[tuple[Piece, int]], budget: int, marker: int) -> list[Window]:
    """Consecutive pieces into windows of at most ``budget`` tokens, page markers counted."""
    windows: list[Window] = []
    current: list[Piece] = []
    used = 0
    for piece, n in sized:
        cost = n + 1 + (marker if not current or current[-1].page != piece.page else 0)
        if current and used + cost > budget:
            windows.append(Window(tuple(current)))
            current, used = [], 0
            cost = n + 1 + marker
        current.append(piece)
        used += cost
    if current:
        windows.append(Window(tuple(current)))
    return windows


def _settle(windows: Sequence[Window], fits: Callable[[str], bool]) -> list[Window]:
    """The windows, each giving its last pieces to the next until its text ``fits``."""
    out: list[Window] = []
    queue = list(windows)
    while queue:
        window, spill = _trim(queue.pop(0), fits)
        out.append(window)
        if spill and queue:
            queue[0] = Window((*spill, *queue[0].pieces))
        elif spill:
            queue.append(Window(spill))
    return out


def _trim(window: Window, fits: Callable[[str], bool]) -> tuple[Window, tuple[Piece, ...]]:
    """The window without the pieces at its end that keep it from fitting, and those."""
    keep = len(window.pieces)
    while keep > 1 and not fits(Window(window.pieces[:keep]).render()):
        keep -= 1
    return Window(window.pieces[:keep]), window.pieces[keep:]
