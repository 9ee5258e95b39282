"""Question language by script, and the languages of known embedding models."""

from __future__ import annotations

import pytest

from qa.retrieval.language import embedding_languages, question_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How many days of annual leave?", "en"),
        ("带薪年假有几天？", "zh"),
        ("VPN 怎么设置？", "zh"),  # a Latin product name inside a Chinese question
        ("What does 年假 mean in the Shenzhen handbook?", "en"),
        ("2024 / 3.14 ???", "en"),  # no letters at all
        ("", "en"),
    ],
)
def test_question_language(text: str, language: str) -> None:
    assert question_language(text) == language


def test_embedding_languages() -> None:
    assert embedding_languages("all-MiniLM-L6-v2") == frozenset({"en"})
    assert embedding_languages("bge-small-en-v1.5") == frozenset({"en"})
    assert embedding_languages("bge-small-zh-v1.5") == frozenset({"zh"})
    assert embedding_languages("e5-base-v2") == frozenset({"en"})
    # Multilingual or unknown models are trusted with every language.
    assert embedding_languages("multilingual-e5-small") is None
    assert embedding_languages("paraphrase-multilingual-MiniLM-L12-v2") is None
    assert embedding_languages("bge-m3") is None
    assert embedding_languages("my-company-model") is None
