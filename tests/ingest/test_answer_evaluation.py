"""``docqa eval answers`` on a small SQuAD file written by the test (fast), its answer
matching, its arithmetic and its bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ingest.answer_evaluation import AnswerEvalReport, Asked, evaluate_answers
from ingest.squad import contains_answer, load_questions_jsonl, load_squad
from qa.errors import InvalidInput, ModelNotBuilt
from qa.limits import MAX_EVAL_QUESTIONS
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from tests.conftest import REPO
from tests.worker.test_cli import docqa

ARTICLES = [
    (
        "Harbour_ferries",
        [
            "The harbour ferry to Lindholm island leaves every forty minutes from pier 3. "
            "Tickets are sold on board.",
            "In winter the Lindholm ferry stops running after 8 pm because of ice.",
        ],
    ),
    (
        "Old lighthouse",
        [
            "The old lighthouse at Skagen was automated in 1985. It now houses a small "
            "maritime museum with a café on the ground floor.",
        ],
    ),
    (
        "Bicycles",
        ["Bicycle parking in the cellar of the head office is free for employees with a badge."],
    ),
]
#: (question, gold answers, impossible)
QUESTIONS: list[tuple[str, list[str], bool]] = [
    ("How often does the harbour ferry to Lindholm island leave?", ["every forty minutes"], False),
    ("In which year was the old lighthouse at Skagen automated?", ["1985"], False),
    # The gold is in no document: the answer cannot hold it (recall and citation 0).
    ("Where is bicycle parking for employees with a badge?", ["rooftop garage"], False),
    # SQuAD 2.0: unanswerable; reported on its own, never in the recall.
    ("Who built the lighthouse at Skagen?", [], True),
]
OFF_TOPIC = ["What is the capital of Japan?", "Who painted the Mona Lisa?"]


def write_squad(path: Path, version: str = "v2.0") -> Path:
    data: list[dict[str, Any]] = []
    for title, paragraphs in ARTICLES:
        pars: list[dict[str, Any]] = [{"context": c, "qas": []} for c in paragraphs]
        data.append({"title": title, "paragraphs": pars})
    for qid, (question, golds, impossible) in enumerate(QUESTIONS, 1):
        # Which paragraph holds a question does not matter: all articles are indexed.
        target = data[min(qid - 1, len(data) - 1)]["paragraphs"][0]
        target["qas"].append(
            {
                "id": f"q{qid}",
                "question": question,
                "answers": [{"text": g, "answer_start": 0} for g in golds],
                "is_impossible": impossible,
            }
        )
    path.write_text(json.dumps({"version": version, "data": data}), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


# -- matching -----------------------------------------------------------------------------------


def test_contains_answer_normalizes_squad_style() -> None:
    text = "> The Panthers' defense gave up just 308 points, ranking sixth [1]."
    assert contains_answer(text, ["308"])
    assert contains_answer(text, ["the Panthers defense"])  # article and apostrophe go
    assert contains_answer(text, ["Sixth!"])
    assert not contains_answer(text, ["30"])  # words, not characters
    assert not contains_answer("sold 3080 tickets", ["308"])
    # A citation marker is no number of the answer.
    assert not contains_answer("The ferry leaves from pier 3 [1].", ["1"])
    # Chinese: spaces and punctuation (full-width too) go; no word boundaries.
    assert contains_answer("黑豹队的防守只丢了 308 分，排名第六。", ["308分"])
    assert contains_answer("在第50届超级碗中，丹佛野马队获胜。", ["丹佛野马队"])
    assert contains_answer("他们在NFL中排名第六", ["NFL"])
    assert not contains_answer("黑豹队的防守", ["野马队"])


# -- the command end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> AnswerEvalReport:
    folder = tmp_path_factory.mktemp("answers")
    squad = write_squad(folder / "tiny-squad.json")
    off = write_jsonl(folder / "off.jsonl", [{"question": OFF_TOPIC[0]}, {"text": OFF_TOPIC[1]}])
    settings = Settings(data_dir=folder / "var")
    return evaluate_answers(
        squad, settings=settings, off_topic=[off], mode="extractive", embedder=embedder
    )


def test_figures_on_a_small_squad_file(report: AnswerEvalReport) -> None:
    assert report.version == "v2.0" and report.mode == "extractive"
    assert report.documents == 3 and report.errors == 0
    assert (report.answerable, report.impossible) == (3, 1)
    by_question = {r.question: r for r in report.results}
    # Present golds are found in the quoted sentences, and the first citation holds them.
    for question, _, _ in QUESTIONS[:2]:
        r = by_question[question]
        assert r.outcome == "answered" and r.hit and r.first_citation_hit, r.answer
    missing = by_question[QUESTIONS[2][0]]
    assert missing.hit is False and missing.first_citation_hit is False
    assert "badge" in missing.answer  # it was answered, with the bicycle sentence
    assert report.answer_recall == pytest.approx(2 / 3)
    assert report.cited == 3 and report.citation_precision == pytest.approx(2 / 3)
    # Declines are the done event's outcome: none of the answerable questions, both
    # planted off-topic ones (the documents are about ferries, a lighthouse and bicycles).
    assert report.false_declines == 0
    [off] = report.off_topic
    assert (off.name, off.questions, off.declined) == ("off.jsonl", 2, 2)
    assert report.off_topic_decline_rate == 1.0
    assert {r.question for r in report.results if r.kind == "off_topic"} == set(OFF_TOPIC)
    assert 0 < report.latency_p50_ms <= report.latency_p95_ms
    assert report.index_dir.is_relative_to(report.index_dir.parents[1] / "eval")


def test_declines_and_rates_add_up() -> None:
    """The report's arithmetic, on outcomes chosen here (a decline needs no model run)."""
    from ingest.answer_evaluation import _report
    from ingest.evaluation import BuiltIndex
    from ingest.squad import SquadSet

    def asked(kind: Any, outcome: str, hit: bool | None = None, cite: bool | None = None) -> Asked:
        name = "off.jsonl" if kind == "off_topic" else "squad"
        return Asked(kind, name, "q", outcome, "", 10.0, hit, cite)

    results = [
        asked("answerable", "answered", True, True),
        asked("answerable", "answered", True, False),
        asked("answerable", "answered", False, None),  # no citation
        asked("answerable", "not_found", False),
        asked("impossible", "not_found"),
        asked("impossible", "answered"),
        asked("off_topic", "not_found"),
        asked("off_topic", "not_found"),
        asked("off_topic", "answered"),
        Asked("off_topic", "off.jsonl", "q", "error", "", 30.0, error="boom"),
    ]
    built = BuiltIndex(Path("/x"), 1, 1, 0.0, True)
    r = _report(
        Path("s.json"), SquadSet("v2.0", (), ()), "extractive", "m", built, results,
        [("off.jsonl", ["q"] * 4)],
    )  # fmt: skip
    assert r.answerable == 4 and r.answer_recall == pytest.approx(0.5)
    assert r.cited == 2 and r.citation_precision == pytest.approx(0.5)
    assert r.false_declines == 1 and r.false_decline_rate == pytest.approx(0.25)
    assert r.impossible_decline_rate == pytest.approx(0.5)
    assert r.off_topic[0].declined == 2 and r.off_topic_decline_rate == pytest.approx(0.5)
    assert r.errors == 1 and r.latency_p50_ms == pytest.approx(10.0)
    assert r.to_json()["off_topic"][0] == {
        "name": "off.jsonl",
        "questions": 4,
        "declined": 2,
        "decline_rate": 0.5,
    }


def test_cli_prints_json_and_a_table(tmp_path: Path) -> None:
    squad = write_squad(tmp_path / "tiny.json", version="1.1")
    off = REPO / "samples" / "eval" / "off_topic.en.jsonl"
    run = docqa(tmp_path / "var", "eval", "answers", str(squad), "--off-topic", str(off),
                "--limit", "2", "--mode", "extractive", "--json",
                "--details", str(tmp_path / "details.jsonl"))  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (tmp_path / "details.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["answerable", "answerable", "off_topic", "off_topic"]
    assert rows[0]["hit"] is True and "forty minutes" in rows[0]["answer"]
    figures = json.loads(run.stdout)
    assert figures["answerable"] == 2 and figures["answer_recall"] == 1.0
    assert figures["citation_precision"] == 1.0
    assert figures["off_topic"][0]["questions"] == 2
    assert figures["index_dir"].startswith(str(tmp_path / "var" / "eval"))
    assert not (tmp_path / "var" / "docqa.db").exists()  # the product DB is never made

    table = docqa(tmp_path / "var", "eval", "answers", str(squad), "--limit", "1",
                  "--mode", "extractive")  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "answer recall" in table.stdout and "1.000 (of 1)" in table.stdout
    assert "index reused" in table.stdout


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a SQuAD file"),
        ('{"data": {}}', "data: expected a list"),
        ('{"data": []}', "holds no questions"),
        ('{"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": []}]}]}', "no questions"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', "paragraphs[0].context"),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "?"}]}]}]}',
            "without answers",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": " ",'
            ' "is_impossible": true}]}]}]}',
            "question: expected a non-empty string",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q",'
            ' "is_impossible": "no"}]}]}]}',
            "is_impossible",
        ),
    ],
)
def test_bad_squad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        load_squad(path)


def test_repeated_ids_and_bytes(tmp_path: Path) -> None:
    qa = {"id": "1", "question": "q", "is_impossible": True}
    doc = {"data": [{"paragraphs": [{"context": "c", "qas": [qa, qa]}]}]}
    (tmp_path / "rep.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="repeats"):
        load_squad(tmp_path / "rep.json")
    (tmp_path / "latin1.json").write_bytes(b'{"data": "\xe9"}')
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_squad(tmp_path / "latin1.json")
    with pytest.raises(InvalidInput, match="no such file"):
        load_squad(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "holds no questions"),
        (["", "   "], "holds no questions"),
        (['{"question": "ok"}', "{oops"], "off.jsonl:2: not JSON"),
        (['["a list"]'], "expected an object"),
        (['{"title": "no question"}'], "no question, query, text field"),
        (['{"query": ""}'], "expected a non-empty string"),
        (['{"text": 5}'], "expected a non-empty string"),
    ],
)
def test_bad_off_topic_files(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        load_questions_jsonl(write_jsonl(tmp_path / "off.jsonl", rows))


def test_off_topic_fields_and_limit(tmp_path: Path) -> None:
    rows = [{"_id": "1", "text": "a"}, {"query": "b"}, "", {"question": "c"}]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    assert load_questions_jsonl(path) == ["a", "b", "c"]
    assert load_questions_jsonl(path, limit=2) == ["a", "b"]
    for name in ("off_topic.en.jsonl", "off_topic.zh.jsonl"):  # the committed sets read
        assert len(load_questions_jsonl(REPO / "samples" / "eval" / name)) == 40


def test_bad_arguments(tmp_path: Path, embedder: Embedder) -> None:
    squad = write_squad(tmp_path / "s.json")
    settings = Settings(data_dir=tmp_path / "var")
    for limit in (0, MAX_EVAL_QUESTIONS + 1):
        with pytest.raises(InvalidInput, match="limit must be between"):
            evaluate_answers(squad, settings=settings, limit=limit, embedder=embedder)
    with pytest.raises(InvalidInput, match="mode"):
        evaluate_answers(squad, settings=settings, mode="fast", embedder=embedder)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no such file"):
        evaluate_answers(squad, settings=settings, off_topic=[tmp_path / "none.jsonl"])
    # No model is built in this data dir: generative mode says so.
    with pytest.raises(ModelNotBuilt, match="docqa model build"):
        evaluate_answers(squad, settings=settings, mode="generative", embedder=embedder)
    assert not (tmp_path / "var" / "docqa.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json"], "no such file"),
        (["{bad}"], "not JSON"),
        (["ok", "--limit", "100000000000"], "--limit"),
        (["ok", "--limit", "0"], "--limit"),
        (["ok", "--off-topic", "nope.jsonl"], "no such file"),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    write_squad(tmp_path / "ok")
    (tmp_path / "{bad}").write_text("{bad")
    args = [str(tmp_path / a) if i == 0 or a.endswith("jsonl") else a for i, a in enumerate(args)]
    run = docqa(tmp_path / "var", "eval", "answers", *args)
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
