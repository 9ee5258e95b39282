"""Lexical analysis: normalisation, stemming, stopwords, numbers, Chinese segmentation,
Traditional and Simplified Chinese meeting, BM25's character n-grams, a question's terms
without its interrogatives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import opencc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.retrieval import lexical
from qa.retrieval.bm25 import BM25Index
from qa.retrieval.lexical import analyze, bm25_terms, question_terms, to_simplified


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


# any text, and text dense in CJK characters (Traditional, Simplified, extensions)
_TEXTS = st.text(max_size=200) | st.text(
    st.characters(min_codepoint=0x3400, max_codepoint=0x9FFF) | st.sampled_from(" ，。a1"),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_TEXTS)
def test_terms_never_hold_whitespace_and_are_deterministic(text: str) -> None:
    for fn in (analyze, bm25_terms):
        terms = fn(text)
        assert all(t and not any(c.isspace() for c in t) for t in terms)
        assert fn(text) == terms
        # what the DB stores (space-joined) splits back into the same terms
        assert " ".join(terms).split() == terms
    # BM25 indexes every word term (evidence looks their idf up in the index)
    assert set(analyze(text)) <= set(bm25_terms(text))


# Pairs that differ in script only, one character-level variant at a time: mainland
# Traditional, Taiwan (裡, 爲/為) and Hong Kong (衞, 裏) forms against the Simplified.
_SAME_WORDS = [
    ("後來的經濟發展與環境問題", "后来的经济发展与环境问题"),
    ("他爲此寫了一本書，時間過去了", "他为此写了一本书，时间过去了"),
    ("衞生署在大樓裏面", "卫生署在大楼里面"),
    ("資料庫裡的記錄", "资料库里的记录"),
]


@pytest.mark.parametrize(("traditional", "simplified"), _SAME_WORDS)
def test_traditional_and_simplified_give_the_same_terms(traditional: str, simplified: str) -> None:
    assert analyze(traditional) == analyze(simplified)
    assert bm25_terms(traditional) == bm25_terms(simplified)


def test_simplified_text_is_left_as_it_is() -> None:
    text = "中华人民共和国的数据库检索系统，后来发展迅速；著名的显著成果，看着他。"
    assert to_simplified(text) == text
    # Taiwan's table would have turned the Simplified 显著 into 显着, apart from 顯著
    assert analyze("显著") == analyze("顯著") == ["显著"]
    # the converter is not localisation: Taiwan's 軟體 stays a different word from 软件
    assert to_simplified("軟體") == "软体"


def test_text_without_han_characters_never_reaches_opencc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail() -> None:
        raise AssertionError("OpenCC called for text without Chinese")

    monkeypatch.setattr(lexical, "_converters", fail)
    assert analyze("Résumé of the GPU 3.14 Привет") == ["résumé", "gpu", "3.14", "привет"]
    assert bm25_terms("Résumé of the GPU") == ["résumé", "gpu"]


def test_mixed_scripts_in_one_text() -> None:
    # Latin, Simplified and Traditional in one sentence (XQuAD zh itself mixes them)
    terms = analyze("NASA的登月計劃與阿波罗计划")
    assert terms[0] == "nasa"
    assert terms.count("计划") == 2 and "計劃" not in terms


def test_bm25_terms_are_character_grams_plus_long_words() -> None:
    terms = bm25_terms("中华人民共和国的数据库")
    # unigrams without function words, every bigram, jieba's words longer than two
    assert {"中", "华", "数", "库"} <= set(terms) and "的" not in terms
    assert {"中华", "人民", "民共", "国的", "数据"} <= set(terms)
    assert {"中华人民共和国", "共和国", "数据库"} <= set(terms)
    assert terms.count("数据") == 1  # a word that is a bigram is not counted twice
    assert bm25_terms("GPU加速 version 2") == ["gpu", "加", "速", "加速", "version", "2"]


@pytest.mark.parametrize("config", ["s2t", "s2tw", "s2hk"])
def test_a_traditional_question_finds_the_simplified_document_and_back(config: str) -> None:
    docs = [
        "员工每年享有十五天带薪年假，未休完的年假可以顺延到下一年。",
        "报销差旅费用时需要提交发票，伦敦的酒店每晚上限为二百二十欧元。",
        "信息安全规定：离开座位时必须锁定电脑屏幕，密码每九十天更换一次。",
    ]
    questions = ["带薪年假有几天？", "伦敦酒店的上限是多少？", "密码多久要更换？"]
    to_traditional = opencc.OpenCC(config).convert
    assert to_traditional(docs[0]) != docs[0]
    for doc_texts, question_texts in (
        ([to_traditional(d) for d in docs], questions),  # Simplified question, Trad docs
        (docs, [to_traditional(q) for q in questions]),  # Traditional question
    ):
        ids = np.arange(len(doc_texts), dtype=np.int64)
        index = BM25Index.build(ids, [bm25_terms(d) for d in doc_texts])
        for expected, question in enumerate(question_texts):
            assert index.search(bm25_terms(question), 1)[0][0] == expected, question


def test_thread_safe() -> None:
    texts = [f"Retrieval {i} systems rank 檢索系統{i} 检索系统 quickly" for i in range(200)]
    for fn in (analyze, bm25_terms):
        expected = [fn(t) for t in texts]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(5):
                assert list(pool.map(fn, texts)) == expected


def test_han_bigrams_are_made_simplified_so_both_scripts_meet() -> None:
    from qa.retrieval.lexical import han_bigrams

    assert han_bigrams("員工的帶薪假期") == han_bigrams("员工的带薪假期")
    assert {"带薪", "薪假"} <= han_bigrams("每年帶薪假期 27 天")
    assert han_bigrams("假 hotel 期") == {"假", "期"}  # a one-character run is itself
    assert han_bigrams("no Chinese here") == set()


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("唐朝是哪一年建立的？", ["唐朝", "建立"]),  # not 一年 from inside 哪一年
        ("上海的人口有多少？", ["上海", "人口"]),
        ("長城有多長？", ["长城"]),  # Traditional: made Simplified first
        ("為什麼貓喜歡曬太陽？", ["猫", "喜欢", "太阳", "晒太阳"]),
        ("带薪年假有几天？", ["带薪", "年", "假"]),  # jieba's cut, 几天 gone
        ("What is the hotel limit in London?", ["hotel", "limit", "london"]),
    ],
)
def test_question_terms_leave_out_what_a_question_asks_with(
    question: str, terms: list[str]
) -> None:
    assert list(dict.fromkeys(question_terms(question))) == terms


def test_words_that_merely_start_like_interrogatives_stay() -> None:
    terms = question_terms("几乎所有员工都有年假吗？哪怕只有一天？")
    assert "几乎" in terms and "哪怕" in terms and "乎" not in terms and "怕" not in terms
