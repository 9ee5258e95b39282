"""Extractive quotes are whole sentences on the question's topic, highlighted exactly.

Issue 11: a heading ran into its sentence ("Hotels The nightly hotel limit ...") and the
third quote was often off-topic. Real ingest of the samples, the packaged embedder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from qa.answering.answer_service import AnswerService
from qa.answering.extractive import extractive_answer, sentence_units, split_sentences
from qa.retrieval.embedder import Embedder
from qa.retrieval.lexical import analyze
from qa.settings import Settings
from qa.store.db.models import PageText
from tests.conftest import REPO, SAMPLES
from tests.qa.answer_corpus import answer_service_over
from tests.qa.test_answer_parts import SOURCES

HOTEL = "What is the hotel limit in London?"
_QUOTE = re.compile(r"^> (.*) \[\d+\]$", re.M)


@pytest.fixture(scope="module")
def answered(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[AnswerService, dict[str, int]]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("quotes"))
    corpus = {
        "pdf": [SAMPLES / "travel-and-expenses.pdf"],
        "markdown": [REPO / "samples" / "source" / "travel-and-expenses.md"],
        "handbook": [SAMPLES / "employee-handbook.md"],
    }
    service, ids = answer_service_over(settings, embedder, corpus)
    yield service, ids
    service.db.dispose()


def ask(service: AnswerService, question: str, collection: int) -> tuple[list[str], Any]:
    """The quoted sentences (one-lined, best first) and the citations event."""
    events = [e.to_json() for e in service.ask(question, [collection])]
    answer = "".join(e["text"] for e in events if e["type"] == "token")
    return _QUOTE.findall(answer), events[-2]


def page_slices(service: AnswerService, highlights: list[dict[str, Any]]) -> list[str]:
    with service.db.session() as s:
        pages = [
            s.scalar(
                select(PageText.text).where(
                    PageText.document_id == h["document_id"], PageText.number == h["page"]
                )
            )
            for h in highlights
        ]
    return [
        " ".join((page or "")[h["char_start"] : h["char_end"]].split())
        for page, h in zip(pages, highlights, strict=True)
    ]


@pytest.mark.parametrize("collection", ["pdf", "markdown"])
def test_heading_is_not_glued_to_the_hotel_sentence(
    answered: tuple[AnswerService, dict[str, int]], collection: str
) -> None:
    service, ids = answered
    quotes, cites = ask(service, HOTEL, ids[collection])
    assert quotes and quotes[0].startswith("The nightly hotel limit is EUR 160")
    assert "EUR 220" in quotes[0] and quotes[0].endswith("breakfast included.")
    assert not any(q.startswith(("Hotels", "#")) for q in quotes)
    assert len(quotes) <= 3
    # The viewer's highlight is exactly the quoted sentence: no heading, no next line.
    assert page_slices(service, cites["highlights"]) == quotes


@pytest.mark.parametrize(
    ("collection", "question"),
    [
        ("pdf", HOTEL),
        ("markdown", "Which class is booked for long flights?"),
        ("handbook", "How many days of paid annual leave?"),
    ],
)
def test_every_quote_shares_a_content_term_with_the_question(
    answered: tuple[AnswerService, dict[str, int]], collection: str, question: str
) -> None:
    service, ids = answered
    quotes, cites = ask(service, question, ids[collection])
    terms = set(analyze(question))
    assert 1 <= len(quotes) <= 3
    assert all(terms & set(analyze(q)) for q in quotes), quotes
    assert page_slices(service, cites["highlights"]) == quotes


def test_list_item_is_its_own_sentence_and_quote(
    answered: tuple[AnswerService, dict[str, int]],
) -> None:
    service, ids = answered
    quotes, cites = ask(service, "How many unused leave days can be carried over?", ids["handbook"])
    item = "Up to 5 unused days may be carried over into the first quarter of the next year."
    assert item in quotes  # no bullet, not joined with the next item
    assert page_slices(service, cites["highlights"]) == quotes


def test_off_topic_sentences_of_retrieved_passages_are_never_quoted(embedder: Embedder) -> None:
    sources = [
        replace(
            SOURCES[0],
            text="Hotels\nThe nightly hotel limit in London is EUR 220. "
            "Our office plants are watered on Fridays.",
        ),
        replace(SOURCES[1], text="Coffee is free in every kitchen. Parking is free for visitors."),
    ]
    answer = extractive_answer(HOTEL, sources, embedder)
    assert [s.text for s in answer.sentences] == ["The nightly hotel limit in London is EUR 220."]
    only = answer.sentences[0]
    assert sources[0].text[only.start : only.end] == only.text


def test_headings_list_items_and_wrapped_lines() -> None:
    text = (
        "## Hotels\n\nThe limit is EUR 220.50 per night, e.g. in London.\nIt includes\n"
        "breakfast.\nTaxis are paid\nby card.\n"
        "- First item, e.g. taxis.\n- Second item\n  wraps here.\n"
        "Meals\nLunch is paid."
    )
    units = [(text[s:e], heading) for s, e, heading in sentence_units(text)]
    assert units == [
        ("## Hotels", True),
        ("The limit is EUR 220.50 per night, e.g. in London.", False),
        ("It includes\nbreakfast.", False),
        ("Taxis are paid\nby card.", False),
        ("First item, e.g. taxis.", False),
        ("Second item\n  wraps here.", False),
        ("Meals", True),
        ("Lunch is paid.", False),
    ]


def test_chinese_sentence_ends() -> None:
    text = (
        "年假为十五天。病假另计！可以结转吗？最多五天；需经理批准\n## 差旅\n住宿标准为每晚五百元。"
    )
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "年假为十五天。",
        "病假另计！",
        "可以结转吗？",
        "最多五天；",
        "需经理批准",
        "## 差旅",
        "住宿标准为每晚五百元。",
    ]
