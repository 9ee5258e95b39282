"""The answer service in extractive mode, end to end over the ingested sample documents."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.answering.answer_service import AnswerService, AskOptions
from qa.answering.events import AnswerEvent
from qa.errors import InvalidInput
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from tests.conftest import SAMPLES
from tests.qa.answer_corpus import answer_service_over


def wire(events: Iterable[AnswerEvent]) -> list[dict[str, Any]]:
    """The events as every client receives them."""
    return [e.to_json() for e in events]


@pytest.fixture(scope="module")
def answered(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[AnswerService, dict[str, int]]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("answer"))
    corpus = {"handbook": [SAMPLES], "shenzhen": [SAMPLES / "员工福利指南.md"]}
    service, ids = answer_service_over(settings, embedder, corpus)
    yield service, ids
    service.db.dispose()


def test_extractive_stream_order_sources_and_citations_on_the_right_page(
    answered: tuple[AnswerService, dict[str, int]],
) -> None:
    service, ids = answered
    assert service.mode == "extractive"
    events = wire(service.ask("What is the hotel limit in London?", [ids["handbook"]]))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources" and kinds[-2:] == ["citations", "done"]
    assert set(kinds[1:-2]) == {"token"}
    answer = "".join(e["text"] for e in events if e["type"] == "token")
    assert answer.startswith("Extractive answer") and "EUR 220" in answer
    sources = events[0]["sources"]
    citations = events[-2]["citations"]
    assert citations and events[-2]["invalid"] == 0
    first = citations[0]
    assert first["document_name"].endswith("travel-and-expenses.pdf")
    assert first["page_start"] == 4
    assert sources[first["n"] - 1]["chunk_id"] == first["chunk_id"]
    highlight = next(h for h in events[-2]["highlights"] if h["n"] == first["n"])
    assert highlight["page"] == 4 and highlight["char_end"] > highlight["char_start"]
    done = events[-1]
    assert done["mode"] == "extractive" and done["retrieval_ms"] > 0


def test_highlight_spans_point_at_the_quoted_sentence(
    answered: tuple[AnswerService, dict[str, int]],
) -> None:
    from sqlalchemy import select

    from qa.store.db.models import PageText

    service, ids = answered
    events = wire(service.ask("How many days of paid annual leave?", [ids["handbook"]]))
    cites = events[-2]
    assert cites["highlights"]
    with service.db.session() as s:
        for h in cites["highlights"]:
            page = s.scalar(
                select(PageText.text).where(
                    PageText.document_id == h["document_id"], PageText.number == h["page"]
                )
            )
            assert page is not None
            quoted = page[h["char_start"] : h["char_end"]]
            assert " ".join(quoted.split()) in " ".join(cites["text"].split())


def test_only_allowed_collections_are_answered_from(
    answered: tuple[AnswerService, dict[str, int]],
) -> None:
    service, ids = answered
    events = wire(service.ask("带薪年假有几天？", [ids["shenzhen"]]))
    names = {s["document_name"] for s in events[0]["sources"]}
    assert names == {"员工福利指南.md"}
    assert "十五天" in events[-2]["text"]
    nothing = wire(service.ask("What is the hotel limit?", []))
    assert nothing[0]["sources"] == [] and nothing[-2]["citations"] == []


@pytest.mark.parametrize(
    ("question", "options"),
    [
        ("", AskOptions()),
        ("   ", AskOptions()),
        ("x" * 9000, AskOptions()),
        ("ok?", AskOptions(k=0)),
        ("ok?", AskOptions(temperature=5)),
        ("ok?", AskOptions(top_p=0)),
        ("ok?", AskOptions(max_tokens=0)),
    ],
)
def test_bad_requests_raise_before_any_event(
    answered: tuple[AnswerService, dict[str, int]], question: str, options: AskOptions
) -> None:
    service, ids = answered
    with pytest.raises(InvalidInput):
        service.ask(question, [ids["handbook"]], options)


def test_cli_ask_prints_sources_answer_and_pages(tmp_path: Path) -> None:
    """``docqa ask`` as the process a user runs (one real process: the entry point, the
    output as printed), then the JSON stream, a decline and an empty question through the
    same command in this process (each process start costs 10-15 s on 2 busy cores)."""
    import json
    import subprocess
    import sys

    from click.testing import CliRunner

    from cli.main import main as docqa
    from qa.answering.decline import DECLINE_SENTENCES

    data = tmp_path / "var"
    env = {"DOCQA_DATABASE_URL": None}
    ingested = CliRunner().invoke(
        docqa, ["--data-dir", str(data), "ingest", str(SAMPLES), "-c", "h"], env=env
    )
    assert ingested.exit_code == 0, ingested.output
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "--data-dir",
            str(data),
            "ask",
            "hotel limit in London?",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "travel-and-expenses.pdf, page 4" in run.stdout and "EUR 220" in run.stdout

    def ask(*args: str) -> Any:
        return CliRunner().invoke(docqa, ["--data-dir", str(data), "ask", *args], env=env)

    as_json = ask("--json", "-c", "h", "hotel?")
    assert as_json.exit_code == 0, as_json.output
    kinds = [json.loads(line)["type"] for line in as_json.output.splitlines()]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    declined = ask("What is the capital of France?")
    assert declined.exit_code == 0, declined.output
    assert DECLINE_SENTENCES["en"] in declined.output
    assert "only the closest passages" in declined.output
    assert "Extractive answer" not in declined.output
    bad = ask("  ")
    assert bad.exit_code == 1 and "the question is empty" in bad.output
