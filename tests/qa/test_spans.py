from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.chunker import ChunkDraft, locate
from ingest.document import Page
from qa.answering.spans import PAGE_JOINER, chunk_offset_to_page, chunk_span_to_pages
from qa.errors import InvalidInput


@given(
    texts=st.lists(st.text(alphabet="ab \n.", min_size=1, max_size=30), min_size=1, max_size=5),
    data=st.data(),
)
def test_offsets_in_a_chunk_map_to_the_same_characters_in_the_pages(
    texts: list[str], data: st.DataObject
) -> None:
    pages = [Page(i + 1, t) for i, t in enumerate(texts)]
    first = data.draw(st.integers(1, len(pages)))
    last = data.draw(st.integers(first, len(pages)))
    start = data.draw(st.integers(0, len(texts[first - 1])))
    end = data.draw(st.integers(0, len(texts[last - 1])))
    if first == last and end < start:
        start, end = end, start
    chunk = ChunkDraft(0, "", first, last, start, end, (), 0)
    text = locate(pages, chunk)
    lengths = {p.number: len(p.text) for p in pages}
    for offset, ch in enumerate(text):
        page, pos = chunk_offset_to_page(lengths, first, start, offset)
        if ch == PAGE_JOINER and pos == len(pages[page - 1].text):
            continue  # the joiner itself belongs to no page
        assert pages[page - 1].text[pos] == ch


def test_span_across_pages() -> None:
    lengths = {1: 10, 2: 5, 3: 8}
    # chunk starts at offset 6 of page 1: "abcd" + "\n" + page 2 (5) + "\n" + page 3...
    spans = chunk_span_to_pages(lengths, 1, 6, 2, 4 + 1 + 5 + 1 + 3)
    assert [(s.page, s.char_start, s.char_end) for s in spans] == [(1, 8, 10), (2, 0, 5), (3, 0, 3)]
    assert chunk_span_to_pages(lengths, 1, 6, 0, 4)[0].char_end == 10


def test_bad_spans_are_rejected() -> None:
    with pytest.raises(InvalidInput):
        chunk_offset_to_page({1: 3}, 2, 0, 0)
    with pytest.raises(InvalidInput):
        chunk_offset_to_page({1: 3}, 1, 0, -1)
    with pytest.raises(InvalidInput):
        chunk_span_to_pages({1: 3}, 1, 0, 2, 1)
