"""Where a piece of a chunk sits in its document's pages.

A chunk's text is ``page(page_start)[char_start:] + PAGE_JOINER + <whole pages between> +
PAGE_JOINER + page(page_end)[:char_end]`` (the chunker's contract, see ``ingest/chunker``).
Citations and highlights need the reverse: an offset inside the chunk text mapped back to a
(page, offset-in-page) pair, so the viewer opens the right page and highlights the passage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qa.errors import InvalidInput

#: inserted between the texts of consecutive pages when a chunk spans pages
PAGE_JOINER = "\n"


@dataclass(frozen=True)
class PageSpan:
    page: int
    char_start: int
    char_end: int


def chunk_offset_to_page(
    page_lengths: Mapping[int, int], page_start: int, char_start: int, offset: int
) -> tuple[int, int]:
    """Map ``offset`` in a chunk's text to ``(page number, offset in that page's text)``."""
    if offset < 0:
        raise InvalidInput(f"negative offset {offset}")
    numbers = sorted(n for n in page_lengths if n >= page_start)
    if not numbers or numbers[0] != page_start:
        raise InvalidInput(f"page {page_start} is unknown")
    page, pos, remaining = page_start, char_start, offset
    for i, number in enumerate(numbers):
        page = number
        room = page_lengths[number] - pos
        if remaining <= room or i == len(numbers) - 1:
            return page, pos + min(remaining, room)
        remaining -= room + len(PAGE_JOINER)
        pos = 0
        if remaining < 0:  # the offset points into the joiner: snap to the next page start
            remaining = 0
    return page, pos


def chunk_span_to_pages(
    page_lengths: Mapping[int, int], page_start: int, char_start: int, start: int, end: int
) -> list[PageSpan]:
    """The page spans covering ``chunk_text[start:end]`` (one per page it touches)."""
    if end < start:
        raise InvalidInput(f"span end {end} before start {start}")
    p0, s0 = chunk_offset_to_page(page_lengths, page_start, char_start, start)
    p1, s1 = chunk_offset_to_page(page_lengths, page_start, char_start, end)
    if p0 == p1:
        return [PageSpan(p0, s0, s1)]
    spans = [PageSpan(p0, s0, page_lengths[p0])]
    spans += [PageSpan(n, 0, page_lengths[n]) for n in sorted(page_lengths) if p0 < n < p1]
    spans.append(PageSpan(p1, 0, s1))
    return spans
