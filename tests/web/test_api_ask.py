"""POST /api/v1/ask over the real app: SSE and JSON answers, options, errors, access.

Extractive mode (no model): the stream is sources, tokens, citations, done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from qa.answering.decline import DECLINE_SENTENCES
from qa.limits import MAX_QUESTION_CHARS
from qa.retrieval.embedder import Embedder
from tests.web.conftest import SECRET_PHRASE, Client, WebEnv, build_env

HOTEL = "What is the hotel limit in London?"
FALCON = "What is the budget of Project Falcon?"
SSE = {"Accept": "text/event-stream"}


def sse_events(body: str) -> list[dict[str, Any]]:
    """Parse a text/event-stream body; checks that each event name matches its type."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        events.append(data)
    return events


def ask_stream(client: Client, question: str, **body: Any) -> list[dict[str, Any]]:
    resp = client.post("/api/v1/ask", json={"question": question, **body}, headers=SSE)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/event-stream"
    return sse_events(resp.get_data(as_text=True))


def ask_json(client: Client, question: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/api/v1/ask", json={"question": question, **body})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    data: dict[str, Any] = resp.get_json()
    return data


def error_of(resp: Any, status: int) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body["error"]) == {"code", "message"}
    code: str = body["error"]["code"]
    return code


# -- streaming ----------------------------------------------------------------------------


def test_stream_sends_sources_then_tokens_then_citations_then_done(web: WebEnv) -> None:
    events = ask_stream(web.client("alice"), HOTEL)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources"
    assert kinds[-2:] == ["citations", "done"]
    assert set(kinds[1:-2]) == {"token"}
    assert len(kinds) > 3
    sources = events[0]["sources"]
    assert sources and {"n", "document_id", "document_name", "page_start", "text"} <= set(
        sources[0]
    )
    citations = events[-2]
    assert "EUR 220" in citations["text"]
    assert citations["citations"] and citations["invalid"] == 0
    # The quoted hotel sentence sits on page 4 of the travel PDF.
    pdf_highlights = [h for h in citations["highlights"] if h["page"] == 4]
    assert pdf_highlights and pdf_highlights[0]["char_end"] > pdf_highlights[0]["char_start"]
    assert events[-1]["mode"] == "extractive"


def test_streamed_tokens_add_up_to_the_answer(web: WebEnv) -> None:
    events = ask_stream(web.client("alice"), HOTEL)
    text = "".join(e["text"] for e in events if e["type"] == "token")
    assert text.strip() == events[-2]["text"].strip()


def test_stream_flag_overrides_the_accept_header(web: WebEnv) -> None:
    alice = web.client("alice")
    resp = alice.post("/api/v1/ask", json={"question": HOTEL, "stream": True})
    assert resp.mimetype == "text/event-stream"
    resp = alice.post("/api/v1/ask", json={"question": HOTEL, "stream": False}, headers=SSE)
    assert resp.mimetype == "application/json"
    assert "EUR 220" in resp.get_json()["answer"]


# -- JSON ---------------------------------------------------------------------------------


def test_json_answer_collects_the_stream(web: WebEnv) -> None:
    data = ask_json(web.client("alice"), HOTEL)
    assert set(data) == {
        "answer",
        "sources",
        "citations",
        "invalid",
        "highlights",
        "mode",
        "outcome",
        "chat_id",
        "done",
    }
    assert data["outcome"] == "answered"
    assert "EUR 220" in data["answer"]
    assert data["mode"] == "extractive"
    assert data["chat_id"] is None
    assert "type" not in data["done"] and data["done"]["finish_reason"] == "stop"
    cited = {c["n"] for c in data["citations"]}
    assert cited and cited <= {s["n"] for s in data["sources"]}


def test_api_token_asks_without_csrf_and_is_audited_as_api(web: WebEnv) -> None:
    token = web.token("bob")
    http = web.app.test_client()
    resp = http.post(
        "/api/v1/ask", json={"question": HOTEL}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200
    assert "EUR 220" in resp.get_json()["answer"]
    web.client("alice").post("/api/v1/ask", json={"question": HOTEL})
    channels = {
        e.username: e.details["channel"] for e in web.svc.audit.list(limit=10, action="question")
    }
    assert channels == {"bob": "api", "alice": "portal"}


# -- access -------------------------------------------------------------------------------


def test_bob_never_receives_the_secret(web: WebEnv) -> None:
    bob = web.client("bob")
    for body in (
        {"question": FALCON},
        {"question": FALCON, "stream": True},
        {"question": f"{SECRET_PHRASE} budget zebra-quartz migration"},
    ):
        resp = bob.post("/api/v1/ask", json=body)
        assert resp.status_code == 200
        assert SECRET_PHRASE not in resp.get_data(as_text=True)


def test_alice_gets_the_secret_from_finance(web: WebEnv) -> None:
    data = ask_json(web.client("alice"), FALCON, collection_ids=[web.collections["finance"]])
    assert data["sources"] and {s["collection"] for s in data["sources"]} == {"finance"}
    assert SECRET_PHRASE in json.dumps(data["sources"])


def test_naming_an_unreadable_collection_is_404(web: WebEnv) -> None:
    bob = web.client("bob")
    finance = web.collections["finance"]
    resp = bob.post("/api/v1/ask", json={"question": FALCON, "collection_ids": [finance]})
    assert error_of(resp, 404) == "not_found"
    assert SECRET_PHRASE not in resp.get_data(as_text=True)
    resp = bob.post(
        "/api/v1/ask", json={"question": FALCON, "collection_ids": [finance]}, headers=SSE
    )
    assert error_of(resp, 404) == "not_found"
    resp = bob.post("/api/v1/ask", json={"question": FALCON, "collection_ids": [987654]})
    assert error_of(resp, 404) == "not_found"


def test_sign_in_and_csrf_are_required(web: WebEnv) -> None:
    anonymous = web.app.test_client()
    resp = anonymous.post("/api/v1/ask", json={"question": HOTEL})
    assert error_of(resp, 401) == "unauthenticated"
    alice = web.client("alice")
    resp = alice.http.post("/api/v1/ask", json={"question": HOTEL})  # no CSRF header
    assert error_of(resp, 403) == "forbidden"


# -- input errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": None},
        {"question": 42},
        {"question": "   "},
        {"question": "x" * (MAX_QUESTION_CHARS + 1)},
        {"question": HOTEL, "collection_ids": "1"},
        {"question": HOTEL, "collection_ids": ["1"]},
        {"question": HOTEL, "collection_ids": [True]},
        {"question": HOTEL, "chat_id": 7},
        {"question": HOTEL, "stream": "yes"},
        {"question": HOTEL, "k": 0},
        {"question": HOTEL, "k": "6"},
        {"question": HOTEL, "temperature": 5},
        {"question": HOTEL, "temperature": True},
        {"question": HOTEL, "top_p": 0},
        {"question": HOTEL, "max_tokens": 100_000},
        {"question": HOTEL, "max_tokens": 1.5},
        {"question": HOTEL, "system_prompt": 3},
        {"question": HOTEL, "system_prompt": "p" * 8001},
    ],
)
def test_bad_fields_are_400(web: WebEnv, body: dict[str, Any]) -> None:
    resp = web.client("alice").post("/api/v1/ask", json=body)
    assert error_of(resp, 400) == "invalid_input"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("question=hi", "application/x-www-form-urlencoded"),
        ("What is the hotel limit?", "text/plain"),
        ('{"question": ', "application/json"),
        ('["question"]', "application/json"),
        ("", "application/json"),
    ],
)
def test_non_json_bodies_are_400(web: WebEnv, data: str, content_type: str) -> None:
    resp = web.client("alice").post("/api/v1/ask", data=data, content_type=content_type)
    assert error_of(resp, 400) == "invalid_input"


def test_body_over_the_cap_is_413(web: WebEnv) -> None:
    huge = json.dumps({"question": "q" * (3 * 1024 * 1024)})
    resp = web.client("alice").post("/api/v1/ask", data=huge, content_type="application/json")
    assert error_of(resp, 413) == "too_large"


def test_wrong_methods_are_405_json(web: WebEnv) -> None:
    alice = web.client("alice")
    for method in ("get", "put", "patch", "delete"):
        resp = getattr(alice, method)("/api/v1/ask")
        assert error_of(resp, 405) == "method_not_allowed"
        assert "POST" in resp.headers["Allow"]


# -- options ------------------------------------------------------------------------------


def test_options_fall_back_to_saved_preferences(web: WebEnv) -> None:
    alice = web.client("alice")
    assert len(ask_json(alice, HOTEL)["sources"]) == 6  # AskOptions default k
    web.svc.accounts.set_preferences(web.users["alice"].user_id, {"temperature": 0.1})
    resp = alice.post("/api/v1/ask", json={"question": HOTEL, "k": 2})
    assert len(resp.get_json()["sources"]) == 2  # the body wins
    assert len(ask_json(alice, HOTEL, k=3, temperature=0.5, top_p=0.9)["sources"]) == 3


def test_saved_preferences_are_validated_when_used(web: WebEnv) -> None:
    # An admin default prompt and user preferences both reach AskOptions; valid ones pass.
    web.svc.config.set_default_system_prompt("Answer like a careful clerk.")
    web.svc.accounts.set_preferences(
        web.users["alice"].user_id, {"max_tokens": 64, "top_p": 0.5, "system_prompt": "Be brief."}
    )
    assert "EUR 220" in ask_json(web.client("alice"), HOTEL)["answer"]


# -- chats --------------------------------------------------------------------------------


def test_answer_is_saved_in_the_chat(web: WebEnv) -> None:
    alice = web.client("alice")
    chat_id = alice.post("/api/v1/chats", json={}).get_json()["chat"]["id"]
    events = ask_stream(alice, HOTEL, chat_id=chat_id)
    data = alice.get(f"/api/v1/chats/{chat_id}").get_json()
    assert data["chat"]["title"] == HOTEL
    question, answer = data["messages"]
    assert (question["role"], question["content"]) == ("user", HOTEL)
    assert answer["role"] == "assistant"
    assert answer["content"] == events[-2]["text"]
    meta = answer["meta"]
    assert meta["mode"] == "extractive" and meta["finish_reason"] == "stop"
    assert [s["n"] for s in meta["sources"]] == [s["n"] for s in events[0]["sources"]]
    assert meta["citations"] == events[-2]["citations"]
    assert meta["highlights"] == events[-2]["highlights"]


def test_json_answer_is_saved_in_the_chat_too(web: WebEnv) -> None:
    alice = web.client("alice")
    chat_id = alice.post("/api/v1/chats").get_json()["chat"]["id"]
    data = ask_json(alice, HOTEL, chat_id=chat_id)
    assert data["chat_id"] == chat_id
    messages = alice.get(f"/api/v1/chats/{chat_id}").get_json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == data["answer"]


def test_unknown_or_foreign_chat_is_404(web: WebEnv) -> None:
    alice, bob = web.client("alice"), web.client("bob")
    resp = alice.post("/api/v1/ask", json={"question": HOTEL, "chat_id": "0" * 32})
    assert error_of(resp, 404) == "not_found"
    chat_id = alice.post("/api/v1/chats").get_json()["chat"]["id"]
    resp = bob.post("/api/v1/ask", json={"question": HOTEL, "chat_id": chat_id}, headers=SSE)
    assert error_of(resp, 404) == "not_found"
    assert alice.get(f"/api/v1/chats/{chat_id}").get_json()["messages"] == []


# -- limits -------------------------------------------------------------------------------


def test_question_rate_limit_is_429_with_retry_after(
    tmp_path: Path, seeded_template: Path, embedder: Embedder
) -> None:
    # SQLite only: the limiter keeps its buckets in memory; asking itself runs on both
    # databases in the other tests.
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(data, embedder, rate_questions_per_min=2)
    try:
        alice, bob = env.client("alice"), env.client("bob")
        for _ in range(2):
            assert alice.post("/api/v1/ask", json={"question": HOTEL}).status_code == 200
        resp = alice.post("/api/v1/ask", json={"question": HOTEL}, headers=SSE)
        assert error_of(resp, 429) == "rate_limited"
        assert int(resp.headers["Retry-After"]) >= 1
        # Per user: bob still has his own budget.
        assert bob.post("/api/v1/ask", json={"question": HOTEL}).status_code == 200
    finally:
        env.svc.close()


# -- declining ----------------------------------------------------------------------------


@pytest.mark.both_databases
def test_unsupported_questions_are_declined_and_stored_as_not_found(web: WebEnv) -> None:
    """Stream, JSON answer and the stored chat all carry the outcome (issue 11)."""
    alice = web.client("alice")
    chat_id = alice.post("/api/v1/chats", json={}).get_json()["chat"]["id"]
    events = ask_stream(alice, "What is the capital of France?", chat_id=chat_id)
    assert events[-1]["type"] == "done" and events[-1]["outcome"] == "not_found"
    assert events[-2]["text"] == DECLINE_SENTENCES["en"] and events[-2]["citations"] == []
    assert events[0]["sources"]  # listed as the closest passages
    data = ask_json(alice, "勾股定理的内容是什么？", chat_id=chat_id)
    assert data["outcome"] == "not_found" and data["done"]["outcome"] == "not_found"
    assert data["answer"] == DECLINE_SENTENCES["zh"] and data["citations"] == []
    answered = ask_json(alice, HOTEL, chat_id=chat_id)
    assert answered["outcome"] == "answered" and "EUR 220" in answered["answer"]
    messages = alice.get(f"/api/v1/chats/{chat_id}").get_json()["messages"]
    assert [(m["role"], m["outcome"]) for m in messages] == [
        ("user", None),
        ("assistant", "not_found"),
        ("user", None),
        ("assistant", "not_found"),
        ("user", None),
        ("assistant", "answered"),
    ]
    assert messages[1]["content"] == DECLINE_SENTENCES["en"]
    assert messages[1]["meta"]["sources"] and messages[1]["meta"]["citations"] == []
