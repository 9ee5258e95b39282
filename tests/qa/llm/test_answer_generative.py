"""The answer service with a real (tiny) Qwen3 built through the production ONNX path.

The tiny model is first taught one answer: a few hundred optimizer steps make it reproduce
"... EUR 220 [1]." for the exact prompt the service builds, so the test can check that a
citation the MODEL writes comes back mapped to the right document and page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.answering.answer_service import AnswerService, AskOptions
from qa.answering.assembly import build_answer_service
from qa.answering.decline import DECLINE_SENTENCES
from qa.errors import Busy
from qa.llm.build import build_model
from qa.llm.generate import OnnxQwenGenerator
from qa.llm.slot import ModelSlot
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.catalog import get_collection
from tests.conftest import SAMPLES
from tests.qa.llm.teach import teach
from tests.qa.llm.tiny_qwen import make_tiny_qwen3

QUESTION = "What is the hotel limit in London?"
TAUGHT_ANSWER = "The hotel limit in London is EUR 220 [1]."
GREEDY = AskOptions(temperature=0.0, max_tokens=40)


@dataclass
class Setup:
    settings: Settings
    service: AnswerService
    collection_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("generative")
    settings = Settings(data_dir=root / "var", model_dir=root / "model")
    ingest = build_ingest_service(settings, embedder)
    run_ingest(ingest, [SAMPLES], "handbook")
    ingest.close()

    hf = make_tiny_qwen3(root / "hf", max_positions=4096)
    # Blockwise INT8 (the default) is accurate on every CPU; the accuracy check is tested in
    # test_accuracy.py, so these two builds leave it out.
    build_model(hf, settings.llm_dir, precision="int8", check_accuracy=False)
    service = build_answer_service(settings, embedder=embedder)
    with service.db.session() as s:
        coll = get_collection(s, "handbook").id
    # The exact prompt the service will send for QUESTION, then teach the model to answer it.
    result = service.retriever.retrieve(QUESTION, [coll], k=GREEDY.k)
    plan, _ = service.plan_prompt(QUESTION, service.prompt_passages(QUESTION, result), GREEDY)
    assert plan.sources and plan.sources[0].document_name.endswith("travel-and-expenses.pdf")
    teach(hf, [(plan.messages, TAUGHT_ANSWER)])
    build_model(hf, settings.llm_dir, precision="int8", check_accuracy=False)
    service = build_answer_service(settings, embedder=embedder)
    yield Setup(settings, service, coll)
    service.db.dispose()


def test_stream_order_and_a_model_written_citation_lands_on_the_right_page(setup: Setup) -> None:
    events = [e.to_json() for e in setup.service.ask(QUESTION, [setup.collection_id], GREEDY)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources"
    assert kinds[-2:] == ["citations", "done"]
    assert set(kinds[1:-2]) <= {"token", "queued"} and "token" in kinds
    answer = "".join(e["text"] for e in events if e["type"] == "token")
    assert answer == TAUGHT_ANSWER
    cites = events[-2]
    assert cites["invalid"] == 0 and [c["n"] for c in cites["citations"]] == [1]
    first = cites["citations"][0]
    assert first["document_name"].endswith("travel-and-expenses.pdf")
    assert first["page_start"] == first["page_end"] == 4
    assert first["chunk_id"] == events[0]["sources"][0]["chunk_id"]
    done = events[-1]
    assert done["mode"] == "generative" and done["finish_reason"] == "stop"
    assert done["outcome"] == "answered" and done["model"] == "hf (INT8)"
    assert done["prompt_tokens"] > 0 and done["completion_tokens"] > 5
    assert done["time_to_first_token_ms"] > 0
    # the system turn was prefilled when the service loaded the model
    assert done["cached_tokens"] > 0
    # the answer copies "hotel limit in London" from its prompt: prompt lookup drafts it
    assert done["accepted_draft_tokens"] > 0
    assert done["draft_acceptance"] == round(
        done["accepted_draft_tokens"] / done["draft_tokens"], 3
    )


def test_follow_up_turn_reuses_the_kv_cache(setup: Setup) -> None:
    service = setup.service
    asked = service.ask(QUESTION, [setup.collection_id], GREEDY, chat_id="chat-1")
    first = [e.to_json() for e in asked]
    answer = first[-2]["text"]
    result = service.retriever.retrieve(QUESTION, [setup.collection_id], k=GREEDY.k)
    plan, _ = service.plan_prompt(QUESTION, service.prompt_passages(QUESTION, result), GREEDY)
    history = [*plan.messages[1:], {"role": "assistant", "content": answer}]
    follow = [
        e.to_json()
        for e in service.ask(
            "And in Paris?", [setup.collection_id], GREEDY, history=history, chat_id="chat-1"
        )
    ]
    done = follow[-1]
    assert done["cached_tokens"] > done["prompt_tokens"] // 2
    assert done["prefilled_tokens"] < done["prompt_tokens"] - done["cached_tokens"] + 1


def test_cancel_stops_within_a_token_and_frees_the_slot(setup: Setup) -> None:
    service = setup.service
    cancel = threading.Event()
    tokens = 0
    events = []
    for event in service.ask(QUESTION, [setup.collection_id], GREEDY, cancel=cancel):
        events.append(event.to_json())
        if event.type == "token":
            tokens += 1
            cancel.set()
    assert tokens == 1
    assert events[-1]["finish_reason"] == "cancelled"
    assert not service.slot.in_use


def _model_held_elsewhere(service: AnswerService) -> AnswerService:
    """The same answer service with no queue place, its model held by someone else: a
    question that needs the model raises Busy (retry after 3 s) at once."""
    held = AnswerService(
        service.db,
        service.retriever,
        service.embedder,
        service.generator,
        slot=ModelSlot(max_waiting=0, retry_after_s=3),
    )
    assert list(held.slot.wait_turn()) == []  # someone else holds the model
    return held


def test_full_queue_is_refused_before_the_stream(setup: Setup) -> None:
    busy = _model_held_elsewhere(setup.service)
    with pytest.raises(Busy) as info:
        busy.ask(QUESTION, [setup.collection_id], GREEDY)
    assert info.value.retry_after_s == 3


def test_unstarted_stream_gives_its_place_back(setup: Setup) -> None:
    """A client that leaves before the first event was written holds nothing."""
    service = setup.service
    stream = service.ask(QUESTION, [setup.collection_id], GREEDY)
    assert service.slot.in_use  # taken at ask time
    stream.close()  # type: ignore[attr-defined]
    assert not service.slot.in_use


def test_abandoned_stream_releases_the_slot(setup: Setup) -> None:
    service = setup.service
    stream = service.ask(QUESTION, [setup.collection_id], GREEDY)
    for event in stream:
        if event.type == "token":
            break
    assert service.slot.in_use
    stream.close()  # type: ignore[attr-defined]  # the client went away
    assert not service.slot.in_use


def test_cli_ask_with_the_built_model(setup: Setup) -> None:
    env = {**os.environ, "DOCQA_MODEL_DIR": str(setup.settings.llm_dir)}
    base = [sys.executable, "-m", "cli.main", "--data-dir", str(setup.settings.data_dir)]
    run = subprocess.run(
        [*base, "ask", QUESTION, "--temperature", "0", "--max-tokens", "40"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert TAUGHT_ANSWER in run.stdout
    assert "[1] docs/travel-and-expenses.pdf, page 4" in run.stdout
    info = subprocess.run([*base, "model", "info"], capture_output=True, text=True, env=env)
    assert "Qwen3ForCausalLM" in info.stdout or "qwen3" in info.stdout.lower()
    assert "prompt lookup, up to 4 tokens" in info.stdout
    assert "int8 instructions" in info.stdout
    as_json = subprocess.run(
        [*base, "ask", "--json", QUESTION, "--temperature", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert events[-1]["mode"] == "generative"


def test_generator_is_the_production_class(setup: Setup) -> None:
    assert isinstance(setup.service.generator, OnnxQwenGenerator)


def test_unset_sampling_options_are_the_model_folders(setup: Setup) -> None:
    """AskOptions that set no temperature / top_p / top_k sample as the built folder's
    generation_config.json says (the real folder's 0.7 / 0.8 / 20), not as constants."""
    service = setup.service
    assert service.generator is not None
    folder = service.generator.sampling_defaults
    assert (folder.temperature, folder.top_p, folder.top_k) == (0.7, 0.8, 20)
    assert (AskOptions().temperature, AskOptions().top_p, AskOptions().top_k) == (None,) * 3

    def answer(options: AskOptions) -> str:
        events = [e.to_json() for e in service.ask(QUESTION, [setup.collection_id], options)]
        return "".join(e["text"] for e in events if e["type"] == "token")

    same = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
    for seed in range(3):
        unset = answer(AskOptions(max_tokens=12, seed=seed))
        assert unset == answer(AskOptions(max_tokens=12, seed=seed, **same))  # type: ignore[arg-type]


def test_unsupported_question_is_declined_without_the_model(setup: Setup) -> None:
    """The retrieval gate answers before the model queue: with the model held by someone
    else and no queue place free, an off-topic question is still declined at once (a
    question that reached the model would raise Busy), and nothing was prefilled."""
    held = _model_held_elsewhere(setup.service)
    for question, sentence in (
        ("What is the capital of France?", DECLINE_SENTENCES["en"]),
        ("勾股定理的内容是什么？", DECLINE_SENTENCES["zh"]),
    ):
        events = [e.to_json() for e in held.ask(question, [setup.collection_id], GREEDY)]
        assert [e["type"] for e in events] == ["sources", "token", "citations", "done"]
        assert events[0]["sources"]  # still listed, as the closest passages
        assert events[1]["text"] == sentence and events[2]["citations"] == []
        done = events[-1]
        assert done["mode"] == "generative" and done["outcome"] == "not_found"
        assert "prompt_tokens" not in done and "queue_wait_ms" not in done
    with pytest.raises(Busy):  # the supported question does need the model
        held.ask(QUESTION, [setup.collection_id], GREEDY)


def test_follow_ups_pass_the_gate_on_their_own_terms(setup: Setup) -> None:
    """In a chat, the gate judges a follow-up with the question before it: an off-topic one
    is declined at once (the model is held by someone else and no queue place is free, so
    a question that needed it would raise Busy), one that leans on the previous turn goes
    to the model (Busy), and a whole prompt turn sent back as history counts as its
    question."""
    service = setup.service
    held = _model_held_elsewhere(service)
    result = service.retriever.retrieve(QUESTION, [setup.collection_id], k=GREEDY.k)
    plan, _ = service.plan_prompt(QUESTION, service.prompt_passages(QUESTION, result), GREEDY)
    answer = {"role": "assistant", "content": TAUGHT_ANSWER}
    for history in (
        [{"role": "user", "content": QUESTION}, answer],  # as stored in a chat
        [*plan.messages[1:], answer],  # the prompt's own user turn, as a client may send
    ):
        for question, sentence in (
            ("What is the capital of France?", DECLINE_SENTENCES["en"]),
            ("勾股定理的内容是什么？", DECLINE_SENTENCES["zh"]),
        ):
            asked = held.ask(question, [setup.collection_id], GREEDY, history=history)
            events = [e.to_json() for e in asked]
            assert [e["type"] for e in events] == ["sources", "token", "citations", "done"]
            assert events[1]["text"] == sentence
            assert events[-1]["outcome"] == "not_found" and "prompt_tokens" not in events[-1]
        for follow_up in ("And in Paris?", "Does that include breakfast?", "Why?"):
            with pytest.raises(Busy):  # not declined: it needs the model
                held.ask(follow_up, [setup.collection_id], GREEDY, history=history)


def test_the_answer_eval_reports_prompt_tokens_in_generative_mode(
    setup: Setup, tmp_path: Path, embedder: Embedder
) -> None:
    """``docqa eval answers`` with a built model: every question the model read a prompt
    for reports its length (the issue's "prompt tokens per question"); a question the
    gate declined has none, and neither has an extractive run."""
    from ingest.answer_evaluation import evaluate_answers
    from tests.ingest.test_answer_evaluation import write_squad

    squad = write_squad(tmp_path / "tiny-squad.json")
    settings = setup.settings.model_copy(update={"data_dir": tmp_path / "var"})
    report = evaluate_answers(
        squad, settings=settings, mode="generative", embedder=embedder, limit=3
    )
    assert report.mode == "generative" and report.errors == 0
    read = [r.prompt_tokens for r in report.results if r.prompt_tokens is not None]
    assert read and all(n > 0 for n in read)
    gated = [r for r in report.results if r.outcome == "not_found" and r.prompt_tokens is None]
    assert len(read) + len(gated) == len(report.results)
    assert report.prompt_tokens_mean == pytest.approx(sum(read) / len(read))
    assert min(read) <= report.prompt_tokens_p95 <= max(read)  # type: ignore[operator]
    assert report.to_json()["prompt_tokens_mean"] == round(report.prompt_tokens_mean, 4)
    extractive = evaluate_answers(
        squad, settings=settings, mode="extractive", embedder=embedder, limit=1
    )
    assert extractive.prompt_tokens_mean is None and extractive.prompt_tokens_p95 is None
