"""Evidence without a dense signal (Chinese questions, English embedder): the question's
content terms, the terms the documents never contain, and the two-term rule.

Real ingest of the bundled Chinese benefits guide and the handbook, the packaged embedder.
The off-topic questions here were all answered with a quote before these rules: each
shares an everyday word or two with the documents (人口, 一年, 日本) and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qa.answering.answer_service import AnswerService
from qa.answering.decline import DECLINE_SENTENCES
from qa.answering.evidence import judge
from qa.retrieval.embedder import Embedder
from qa.retrieval.lexical import question_terms
from qa.settings import Settings
from tests.conftest import SAMPLES
from tests.qa.answer_corpus import answer_service_over


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


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[AnswerService, dict[str, int]]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("lexical-evidence"))
    corpus = {"benefits": [SAMPLES / "员工福利指南.md"], "handbook": [SAMPLES]}
    answers, ids = answer_service_over(settings, embedder, corpus)
    yield answers, ids
    answers.db.dispose()


def test_retrieval_names_the_terms_no_chunk_contains(
    service: tuple[AnswerService, dict[str, int]],
) -> None:
    answers, ids = service
    result = answers.retriever.retrieve("钢琴有多少个琴键？", [ids["benefits"]], k=6)
    assert result.absent_terms == {"钢琴", "琴键"}
    result = answers.retriever.retrieve("正式员工的带薪年假有几天？", [ids["benefits"]], k=6)
    assert result.absent_terms == frozenset()
    assert set(result.term_idf) == {"正式", "员工", "带薪", "年", "假"}  # no 几天


@pytest.mark.parametrize(
    ("collection", "question"),
    [
        ("benefits", "钢琴有多少个琴键？"),  # terms the documents never contain
        ("benefits", "上海的人口有多少？"),
        ("benefits", "日本的首都是哪里？"),
        ("handbook", "一年有多少个节气？"),  # 一年 is everywhere, 节气 nowhere
        ("handbook", "电动汽车的电池能用多少年？"),
    ],
)
def test_chinese_off_topic_questions_are_declined(
    service: tuple[AnswerService, dict[str, int]], collection: str, question: str
) -> None:
    answers, ids = service
    result = answers.retriever.retrieve(question, [ids[collection]], k=6)
    assert not result.dense_used
    verdict = judge(question, result)
    assert not verdict.supported, verdict
    events = [e.to_json() for e in answers.ask(question, [ids[collection]])]
    assert events[-1]["outcome"] == "not_found"
    assert "".join(e["text"] for e in events if e["type"] == "token") == DECLINE_SENTENCES["zh"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("带薪年假有几天？", "十五天"),
        ("正式员工每年有多少天带薪年假？", "十五天"),
        ("員工的帶薪年假有幾天？", "十五天"),  # Traditional, against a Simplified guide
    ],
)
def test_chinese_questions_the_guide_answers_are_answered(
    service: tuple[AnswerService, dict[str, int]], question: str, expected: str
) -> None:
    answers, ids = service
    events = [e.to_json() for e in answers.ask(question, [ids["benefits"]])]
    assert events[-1]["outcome"] == "answered"
    assert events[-2]["citations"] and expected in events[-2]["text"]
