"""Lexical analysis: normalisation, stemming, stopwords, numbers, Chinese segmentation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hypothesis import given, settings
from hypothesis import strategies as st

from qa.retrieval.lexical import analyze


def test_english_is_stemmed_and_stopwords_dropped() -> None:
    assert analyze("The Running dogs were running to the parks") == [
        "run",
        "dog",
        "run",
        "park",
    ]


def test_possessives_and_apostrophes() -> None:
    assert analyze("John's model") == analyze("John’s models") == ["john", "model"]
    assert analyze("don't") == ["dont"]


def test_numbers_are_kept_whole() -> None:
    assert analyze("Version 3.14 costs 1,000 in 2024; covid19") == [
        "version",
        "3.14",
        "cost",
        "1,000",
        "2024",
        "covid19",
    ]


def test_nfkc_and_case_folding() -> None:
    # full-width letters and digits, a ligature and case variants meet the same terms
    assert analyze("ＲＡＧ　１２３ ﬁle") == analyze("rag 123 FILE") == ["rag", "123", "file"]
    assert analyze("STRASSE") == analyze("Straße")


def test_chinese_search_mode_segmentation() -> None:
    terms = analyze("中华人民共和国的数据库检索系统。")
    # the whole compound and its dictionary parts, so a query for a part matches
    for term in ("中华人民共和国", "人民", "共和国", "数据库", "检索", "系统"):
        assert term in terms
    assert "的" not in terms and "。" not in terms


def test_mixed_scripts() -> None:
    terms = analyze("GPU加速 Привет мир 안녕하세요 l’été")
    assert terms[:2] == ["gpu", "加速"]
    assert {"привет", "мир", "안녕하세요", "lété"} <= set(terms)


def test_blank_and_punctuation_only() -> None:
    assert analyze("") == []
    assert analyze(" \n\t — ... !!! ，。") == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_terms_never_hold_whitespace_and_are_deterministic(text: str) -> None:
    terms = analyze(text)
    assert all(t and not any(c.isspace() for c in t) for t in terms)
    assert analyze(text) == terms
    # what the DB stores (space-joined) splits back into the same terms
    assert " ".join(terms).split() == terms


def test_thread_safe() -> None:
    texts = [f"Retrieval {i} systems rank documents 检索系统{i} quickly" for i in range(200)]
    expected = [analyze(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            assert list(pool.map(analyze, texts)) == expected
