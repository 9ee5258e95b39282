"""Chunker: the exact-span contract (property tests) and the cutting behaviour."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunker import ChunkDraft, chunk_document, locate
from ingest.document import Heading, Page
from qa.answering.spans import PAGE_JOINER
from qa.errors import InvalidInput
from qa.retrieval.tokens import Tokenizer, load_tokenizer, packaged_model_dir


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return load_tokenizer(packaged_model_dir())


# Words of up to five tokens, so that a 12-token window always holds a word boundary.
WORDS = [
    "the", "model", "retrieval", "index", "answers", "questions", "Paris", "42", "café",
    "end.", "why?", "yes!", "(see", "note)", "数据", "检索。", "中文", "测试！", "系统",
    "tokenization", "unbelievably", "embeddings",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", "\n", "\n\n", "  ", "\t"]


@st.composite
def page_texts(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 80))
    parts: list[str] = [draw(st.sampled_from(["", " ", "\n"]))]
    for _ in range(n):
        parts.append(draw(st.sampled_from(WORDS)))
        parts.append(draw(st.sampled_from(SEPARATORS)))
    return "".join(parts)


@st.composite
def documents(draw: st.DrawFn) -> list[Page]:
    texts = draw(st.lists(page_texts(), min_size=1, max_size=4))
    pages = []
    number = draw(st.integers(1, 3))
    for text in texts:
        # Loaders report headings where a line or word starts, never inside a word.
        word_starts = [i for i in range(len(text) + 1) if i == 0 or text[i - 1].isspace()]
        offsets = draw(st.lists(st.sampled_from(word_starts), max_size=3))
        headings = tuple(
            Heading(offset=o, level=draw(st.integers(1, 3)), title=f"h{i}")
            for i, o in enumerate(sorted(offsets))
        )
        pages.append(Page(number=number, text=text, headings=headings))
        number += draw(st.integers(1, 2))
    return pages


def _expected_path(pages: list[Page], chunk: ChunkDraft) -> tuple[str, ...]:
    """Oracle: headings at or before the chunk's first character, as a level stack."""
    stack: list[tuple[int, str]] = []
    for page in pages:
        for h in sorted(page.headings, key=lambda h: h.offset):
            if (page.number, h.offset) > (chunk.page_start, chunk.char_start):
                return tuple(t for _, t in stack)
            while stack and stack[-1][0] >= h.level:
                stack.pop()
            stack.append((h.level, h.title))
    return tuple(t for _, t in stack)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages=documents(), max_tokens=st.integers(12, 60), data=st.data())
def test_offsets_contract_and_invariants(
    tok: Tokenizer, pages: list[Page], max_tokens: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, max_tokens // 2))
    chunks = chunk_document(pages, tok, max_tokens, overlap)

    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    index = {p.number: i for i, p in enumerate(pages)}
    previous_start = (-1, -1)
    for c in chunks:
        assert locate(pages, c) == c.text
        assert c.text and c.text == c.text.strip()
        assert c.token_count == tok.count(c.text) <= max_tokens
        start = (index[c.page_start], c.char_start)
        assert start > previous_start  # chunks advance through the document
        previous_start = start
        first = pages[index[c.page_start]].text
        if c.char_start > 0:
            before, at = first[c.char_start - 1], first[c.char_start]
            assert not (before.isascii() and before.isalnum() and at.isalnum()), "starts mid-word"
        assert c.heading_path == _expected_path(pages, c)
        if c.page_start == c.page_end:
            assert c.char_start < c.char_end

    # Nothing is lost: every token of every page lies inside some chunk.
    spans = [((index[c.page_start], c.char_start), (index[c.page_end], c.char_end)) for c in chunks]
    for pi, page in enumerate(pages):
        for s, e in tok.token_offsets(page.text):
            if not page.text[s:e].strip():
                continue
            assert any(a <= (pi, s) and (pi, e) <= b for a, b in spans), (pi, page.text[s:e])


def _english(paragraphs: int, sentences: int = 6) -> str:
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
    ]
    out = []
    for p in range(paragraphs):
        sents = []
        for s in range(sentences):
            n = 6 + (p * 7 + s * 3) % 9
            body = " ".join(words[(p + s + i) % len(words)] for i in range(n))
            sents.append(body.capitalize() + ".")
        out.append(" ".join(sents))
    return "\n\n".join(out)


def test_sizes_overlap_and_boundaries(tok: Tokenizer) -> None:
    text = _english(30)
    chunks = chunk_document([Page(1, text)], tok, 64, 16)
    assert len(chunks) > 5
    assert all(c.token_count <= 64 for c in chunks)
    # Not fragments: all but the last use at least half the budget.
    assert all(c.token_count >= 32 for c in chunks[:-1])
    # Ends fall on sentence (or paragraph) boundaries when one is near the window end.
    assert sum(c.text.endswith(".") for c in chunks) >= len(chunks) - 1
    for a, b in itertools.pairwise(chunks):
        assert b.char_start < a.char_end, "consecutive chunks share overlap"
        shared = tok.count(text[b.char_start : a.char_end])
        assert shared in range(1, 16 + 3)


@pytest.mark.parametrize("extra_words", range(20, 32))
def test_no_tiny_tail(tok: Tokenizer, extra_words: int) -> None:
    # Lengths chosen so that a plain sliding window would leave a last chunk with 1-5 new
    # tokens (the rest being overlap).
    text = _english(6, 5) + " " + " ".join(["omega"] * extra_words)
    chunks = chunk_document([Page(1, text)], tok, 64, 16)
    for a, b in itertools.pairwise(chunks):
        # every chunk brings a worthwhile amount of new text, the last one included
        assert tok.count(text[a.char_end : b.char_end]) >= 64 // 10


def test_no_overlap_means_disjoint(tok: Tokenizer) -> None:
    text = _english(10)
    chunks = chunk_document([Page(1, text)], tok, 50, 0)
    for a, b in itertools.pairwise(chunks):
        assert a.char_end <= b.char_start


def test_headings_start_chunks_and_give_paths(tok: Tokenizer) -> None:
    body = _english(3)
    parts = ["Guide\n\n", "Install\n\n" + body + "\n\n", "Linux\n\n" + body + "\n\n", "Usage\n\n"]
    parts.append(body)
    text = ""
    headings = []
    levels = [1, 2, 3, 2]
    titles = ["Guide", "Install", "Linux", "Usage"]
    for part, level, title in zip(parts[:4], levels, titles, strict=True):
        headings.append(Heading(len(text), level, title))
        text += part
    text += parts[4]
    chunks = chunk_document([Page(1, text, tuple(headings))], tok, 80, 20)

    # "Guide" alone is a tiny section: glued to "Install" rather than a chunk of its own.
    assert chunks[0].char_start == 0 and chunks[0].heading_path == ("Guide",)
    assert not any(c.text == "Guide" for c in chunks)
    starts = {c.char_start for c in chunks}
    for h in headings[2:]:
        assert h.offset in starts, f"heading {h.title} does not start a chunk"
    linux, usage = headings[2].offset, headings[3].offset
    for c in chunks:
        if linux <= c.char_start < usage:
            assert c.heading_path == ("Guide", "Install", "Linux")
            assert c.char_end <= usage, "sections are not mixed"
        if c.char_start >= usage:
            assert c.heading_path == ("Guide", "Usage")


def test_heading_path_carries_across_pages(tok: Tokenizer) -> None:
    pages = [
        Page(1, "Chapter\n\n" + _english(2), (Heading(0, 1, "Chapter"),)),
        Page(2, _english(2)),
    ]
    chunks = chunk_document(pages, tok, 40, 8)
    assert {c.heading_path for c in chunks} == {("Chapter",)}
    assert any(c.page_start == 2 for c in chunks)


def test_chinese_without_spaces(tok: Tokenizer) -> None:
    sentence = "检索增强生成系统先从文档中找到相关段落，然后让模型根据这些段落回答问题。"
    text = sentence * 40
    chunks = chunk_document([Page(1, text)], tok, 48, 8)
    assert len(chunks) > 10
    for c in chunks:
        assert locate([Page(1, text)], c) == c.text
        assert c.token_count <= 48
    assert sum(c.text.endswith("。") for c in chunks) >= len(chunks) - 1


def test_each_page_starts_a_chunk_so_citations_name_one_page(tok: Tokenizer) -> None:
    pages = [
        Page(1, "The results were measured on three machines with two cores each."),
        Page(2, "Every machine ran the same benchmark three times in a quiet room."),
    ]
    chunks = chunk_document(pages, tok, 50, 10)
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 1), (2, 2)]


def test_a_tiny_page_is_glued_to_the_next(tok: Tokenizer) -> None:
    pages = [Page(1, "Results"), Page(2, "three machines were measured in total, twice each.")]
    (chunk,) = chunk_document(pages, tok, 50, 10)
    assert (chunk.page_start, chunk.page_end) == (1, 2)
    assert chunk.text == "Results" + PAGE_JOINER + pages[1].text
    assert locate(pages, chunk) == chunk.text


def test_whitespace_is_trimmed_by_offsets(tok: Tokenizer) -> None:
    page = Page(7, "  \n\n  Hello world.  \n ")
    (chunk,) = chunk_document([page], tok, 50, 10)
    assert chunk.text == "Hello world."
    assert page.text[chunk.char_start : chunk.char_end] == "Hello world."
    assert chunk.page_start == chunk.page_end == 7


def test_blank_documents_give_no_chunks(tok: Tokenizer) -> None:
    assert chunk_document([], tok, 50, 10) == []
    assert chunk_document([Page(1, ""), Page(2, " \n\t \u3000 ")], tok, 50, 10) == []


def test_long_word_is_split_but_fits(tok: Tokenizer) -> None:
    text = "x" * 3000  # no boundary anywhere: forced splits, still within budget
    chunks = chunk_document([Page(1, text)], tok, 32, 4)
    assert chunks and all(c.token_count <= 32 for c in chunks)
    assert chunks[-1].char_end == len(text)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_invalid_arguments(tok: Tokenizer, max_tokens: int, overlap: int) -> None:
    with pytest.raises(InvalidInput):
        chunk_document([Page(1, "text")], tok, max_tokens, overlap)


def test_page_numbers_must_increase(tok: Tokenizer) -> None:
    with pytest.raises(InvalidInput):
        chunk_document([Page(2, "a"), Page(1, "b")], tok, 10, 2)


def test_thousand_pages_are_fast(tok: Tokenizer) -> None:
    pages = [Page(i + 1, _english(4, 5)) for i in range(1000)]  # ~1,400 chars per page
    t0 = time.perf_counter()
    chunks = chunk_document(pages, tok, 200, 40)
    elapsed = time.perf_counter() - t0
    assert len(chunks) > 1000
    assert elapsed < 6.0, f"1,000 pages took {elapsed:.1f}s"
