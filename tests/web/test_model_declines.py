"""A model that declines: the decline sentence written by the MODEL is detected end to end.

The evidence gate lets the questions below through (the documents do cover them), so the
model runs; this tiny Qwen3 (the real tokenizer and chat template, ``tiny_qwen.py``) was
taught to answer their exact prompts with the decline sentence in the question's language,
then built with ``docqa model build`` (checked INT8, as a user builds one). The product must
tell that reply from an answer: ``outcome: not_found`` in the stream's ``done`` event, the
REST answer, the OpenAI completion and the stored chat the portal reopens, no citation.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main as docqa
from qa.answering.answer_service import AskOptions
from qa.answering.assembly import build_answer_service
from qa.answering.decline import DECLINE_SENTENCES
from qa.answering.evidence import judge
from qa.llm.generate import OnnxQwenGenerator
from qa.retrieval.embedder import Embedder
from qa.store.catalog import get_collection
from tests.qa.llm.teach import teach
from tests.qa.llm.tiny_qwen import make_tiny_qwen3
from tests.web.conftest import WebEnv, build_env, make_settings
from tests.web.test_api_ask import ask_json, ask_stream
from tests.web.test_openai import COMPLETIONS, bearer

#: questions the handbook answers (the gate passes them), one per decline language
QUESTIONS = {"en": "What is the hotel limit in London?", "zh": "带薪年假有几天？"}


def _build(data: Path, hf: Path, out: Path) -> None:
    # Blockwise INT8 stays within the check on every CPU, so the check (which on a CPU
    # without VNNI rejects the dynamic kernel and rebuilds layer by layer, a minute per
    # build on an AMD Zen 3) is left out: this module is about declines, not builds.
    args = ["--data-dir", str(data), "model", "build", "--from", str(hf), "--out", str(out)]
    docqa([*args, "--kernel", "blockwise", "--no-check"], standalone_mode=False)


@pytest.fixture(scope="module")
def declining(
    tmp_path_factory: pytest.TempPathFactory, seeded_template: Path, embedder: Embedder
) -> Iterator[WebEnv]:
    root = tmp_path_factory.mktemp("declining")
    data, hf, model = root / "var", root / "hf", root / "model"
    shutil.copytree(seeded_template, data)
    make_tiny_qwen3(hf)
    _build(data, hf, model)
    # The exact prompts the app will send (same retrieval, same template, same budget).
    planner = build_answer_service(
        make_settings(data), embedder=embedder, generator=OnnxQwenGenerator(model, threads=1)
    )
    with planner.db.session() as session:
        handbook = get_collection(session, "handbook").id
    examples = []
    for lang, question in QUESTIONS.items():
        result = planner.retriever.retrieve(question, [handbook], k=AskOptions().k)
        assert judge(question, result).supported, question  # the model will be asked
        plan, _ = planner.plan_prompt(
            question, planner.prompt_passages(question, result), AskOptions()
        )
        examples.append((plan.messages, DECLINE_SENTENCES[lang]))
    planner.db.dispose()
    teach(hf, examples)
    _build(data, hf, model)
    env = build_env(data, embedder, generator=OnnxQwenGenerator(model, threads=1))
    try:
        yield env
    finally:
        env.svc.close()


def test_the_model_s_decline_is_not_found_in_the_api_and_the_stored_chat(
    declining: WebEnv,
) -> None:
    alice = declining.client("alice")
    handbook = declining.collections["handbook"]
    chat_id = alice.post("/api/v1/chats", json={}).get_json()["chat"]["id"]
    for lang, question in QUESTIONS.items():
        sentence = DECLINE_SENTENCES[lang]
        body = {"collection_ids": [handbook], "temperature": 0, "chat_id": chat_id}
        data = ask_json(alice, question, **body)
        assert data["answer"] == sentence
        assert data["outcome"] == "not_found" and data["done"]["outcome"] == "not_found"
        assert data["done"]["mode"] == "generative" and data["done"]["completion_tokens"] > 0
        assert data["citations"] == [] and data["sources"]  # listed as the closest passages
    events = ask_stream(alice, QUESTIONS["en"], collection_ids=[handbook], temperature=0)
    assert "".join(e["text"] for e in events if e["type"] == "token") == DECLINE_SENTENCES["en"]
    done = events[-1]
    assert done["type"] == "done" and done["outcome"] == "not_found"
    assert done["prompt_tokens"] > 0  # the model was asked, not the gate
    assert events[-2]["type"] == "citations" and events[-2]["citations"] == []
    # What the portal shows when the chat is reopened.
    messages = alice.get(f"/api/v1/chats/{chat_id}").get_json()["messages"]
    assert [(m["role"], m["outcome"]) for m in messages] == [
        ("user", None),
        ("assistant", "not_found"),
    ] * 2
    assert [m["content"] for m in messages[1::2]] == list(DECLINE_SENTENCES.values())
    assert all(m["meta"]["citations"] == [] and m["meta"]["sources"] for m in messages[1::2])


def test_the_model_s_decline_is_not_found_through_the_openai_endpoint(
    declining: WebEnv,
) -> None:
    http = declining.app.test_client()
    body = {
        "model": "docqa/handbook",
        "messages": [{"role": "user", "content": QUESTIONS["en"]}],
        "temperature": 0,
    }
    resp = http.post(COMPLETIONS, json=body, headers=bearer(declining.token("alice")))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    completion = resp.get_json()
    assert completion["choices"][0]["message"]["content"] == DECLINE_SENTENCES["en"]
    assert completion["outcome"] == "not_found" and completion["citations"] == []
    assert completion["usage"]["completion_tokens"] > 0  # written by the model
