"""Prompt budget, citation validation and extractive answers (real embedder and tokenizer)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qa.answering.citations import cited_numbers, validate_citations
from qa.answering.extractive import (
    EXTRACTIVE_LABEL,
    EXTRACTIVE_LABELS,
    extractive_answer,
    split_sentences,
)
from qa.answering.prompt import (
    DEFAULT_SYSTEM_PROMPT,
    build_prompt,
    format_source,
    system_message,
)
from qa.errors import InvalidInput
from qa.retrieval.embedder import Embedder
from qa.retrieval.retriever import Passage


def passage(n: int, text: str, score: float, page: int = 1) -> Passage:
    return Passage(
        chunk_id=1000 + n,
        document_id=f"doc{n}",
        document_name=f"file{n}.pdf",
        document_title=None,
        collection_id=1,
        collection_name="c",
        text=text,
        page_start=page,
        page_end=page,
        char_start=10 * n,
        char_end=10 * n + len(text),
        heading_path=(),
        score=score,
        dense_rank=n,
        lexical_rank=None,
    )


SOURCES = [
    passage(1, "The nightly hotel limit is EUR 160 in most cities.", 0.9, page=4),
    passage(2, "Trains are preferred for journeys under 600 kilometres.", 0.5, page=3),
    passage(3, "Mileage is reimbursed at EUR 0.23 per kilometre.", 0.4, page=6),
]


def test_citations_are_validated_mapped_and_cleaned() -> None:
    answer = "The limit is EUR 160 [1][7]. Trains first [2, 9]. Again [1]. Bad 【12】 end."
    report = validate_citations(answer, SOURCES)
    assert [c.n for c in report.citations] == [1, 2]
    assert report.invalid == 3
    assert report.citations[0].page_start == 4 and report.citations[0].document_id == "doc1"
    assert report.text == "The limit is EUR 160 [1]. Trains first [2]. Again [1]. Bad end."
    assert cited_numbers("a [1] b [2，3] c 【4】") == [1, 2, 3, 4]


def test_no_citations_and_no_sources() -> None:
    assert validate_citations("Nothing cited.", SOURCES).citations == []
    report = validate_citations("Made up [1].", [])
    assert report.invalid == 1 and report.text == "Made up."


def test_budget_drops_the_weakest_passages_first() -> None:
    def count(text: str) -> int:
        return len(text.split())

    full = build_prompt("hotel?", SOURCES, count_tokens=count, budget_tokens=10_000)
    assert full.dropped == 0 and [p.chunk_id for p in full.sources] == [1001, 1002, 1003]
    assert full.messages[0] == system_message(DEFAULT_SYSTEM_PROMPT)
    assert "[1] file1.pdf (p. 4)" in full.messages[-1]["content"]
    assert full.messages[-1]["content"].endswith("Question: hotel?")

    one = count(format_source(1, SOURCES[0])) + 2
    tight = build_prompt("hotel?", SOURCES, count_tokens=count, budget_tokens=one + 3)
    assert [p.chunk_id for p in tight.sources] == [1001] and tight.dropped == 2
    assert tight.source_tokens <= one + 3

    # the strongest passage comes first whatever order the list is in
    shuffled = [SOURCES[2], SOURCES[0], SOURCES[1]]
    best = build_prompt("hotel?", shuffled, count_tokens=count, budget_tokens=one + 3)
    assert [p.chunk_id for p in best.sources] == [1001]


def test_history_sits_between_system_and_the_new_question() -> None:
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    plan = build_prompt("q2", SOURCES, count_tokens=len, budget_tokens=10_000, history=history)
    assert [m["role"] for m in plan.messages] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize("question", ["", "   \n"])
def test_empty_question_is_refused(question: str) -> None:
    with pytest.raises(InvalidInput):
        build_prompt(question, SOURCES, count_tokens=len, budget_tokens=100)


def test_sentence_split_keeps_offsets() -> None:
    text = "First one.  Second one! 第三句。第四句？\n\nLast"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "First one.",
        "Second one!",
        "第三句。",
        "第四句？",
        "Last",
    ]


def test_extractive_answer_quotes_the_best_sentence_with_its_source(embedder: Embedder) -> None:
    sources = [
        replace(SOURCES[1], text="Trains are preferred. Economy class is standard on flights."),
        replace(
            SOURCES[0],
            text="Breakfast is included. The nightly hotel limit in London is EUR 220.",
        ),
    ]
    answer = extractive_answer("What is the hotel limit in London?", sources, embedder)
    assert answer.text.startswith(EXTRACTIVE_LABEL)
    top = max(answer.sentences, key=lambda s: s.score)
    assert top.source == 2 and "EUR 220" in top.text
    assert sources[1].text[top.start : top.end] == top.text
    assert "[2]" in answer.text
    # a Chinese question gets the label in Chinese, as it gets the decline in Chinese
    zh = extractive_answer("伦敦的酒店住宿上限是多少？London hotel", sources, embedder)
    assert zh.text.startswith(EXTRACTIVE_LABELS["zh"])


def test_extractive_answer_without_sources(embedder: Embedder) -> None:
    answer = extractive_answer("anything?", [], embedder)
    assert "nothing that matches" in answer.text and answer.sentences == []
