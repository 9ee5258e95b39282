"""The OpenAI-compatible endpoint: models, completions, streaming, errors, access control.

Plain HTTP through the Flask test client, shaped like what the OpenAI SDKs send and parse.
The answers are extractive (no model in the ``web`` fixture), which is enough to see which
passages a user can reach; streaming framing and cancellation work the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from qa.answering.decline import DECLINE_SENTENCES
from tests.web.conftest import SECRET_PHRASE, WebEnv

MODELS = "/v1/models"
COMPLETIONS = "/v1/chat/completions"
SECRET_QUESTION = "What is the budget of Project Falcon for the zebra-quartz migration?"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ask(
    env: WebEnv, user: str, model: str = "docqa", question: str = SECRET_QUESTION, **extra: Any
) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": question}], **extra}
    return env.app.test_client().post(COMPLETIONS, json=body, headers=bearer(env.token(user)))


def openai_error(resp: Any) -> dict[str, Any]:
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["code"], str) and isinstance(error["type"], str)
    return error


def leaks_secret(completion: dict[str, Any]) -> bool:
    """Whether any part of a reply carries the finance document."""
    text = json.dumps(completion, ensure_ascii=False)
    return SECRET_PHRASE in text or "falcon-budget" in text


def parse_sse(raw: str) -> list[Any]:
    """The ``data:`` payloads in order (JSON decoded, except the final ``[DONE]``)."""
    payloads: list[Any] = []
    for block in raw.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if not lines:
            continue
        assert all(ln.startswith("data: ") for ln in lines), block
        data = "\n".join(ln[len("data: ") :] for ln in lines)
        payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


# -- models ---------------------------------------------------------------------------------


def test_models_per_user(web: WebEnv) -> None:
    http = web.app.test_client()

    def model_ids(user: str) -> list[str]:
        resp = http.get(MODELS, headers=bearer(web.token(user)))
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["object"] == "list"
        for model in body["data"]:
            assert model["object"] == "model" and model["owned_by"] == "docqa"
            assert isinstance(model["created"], int) and model["name"].startswith("docqa: ")
        return [m["id"] for m in body["data"]]

    alice = model_ids("alice")
    assert alice[0] == "docqa" and sorted(alice[1:]) == ["docqa/finance", "docqa/handbook"]
    assert model_ids("bob") == ["docqa", "docqa/handbook"]


def test_models_with_a_session(web: WebEnv) -> None:
    resp = web.client("bob").get(MODELS)
    assert resp.status_code == 200
    assert [m["id"] for m in resp.get_json()["data"]] == ["docqa", "docqa/handbook"]


def test_model_ids_are_url_safe_slugs_and_the_names_still_resolve(web: WebEnv) -> None:
    admin = web.users["admin"]
    names = ["Corpus trial", "corpus-trial", "员工手册", "Q3 Finance_Legal. Übersicht"]
    ids = {n: web.svc.library.create_collection(admin, n) for n in names}
    resp = web.app.test_client().get(MODELS, headers=bearer(web.token("admin")))
    listed = {m["name"]: m["id"] for m in resp.get_json()["data"]}
    assert listed["docqa: Corpus trial"] == "docqa/corpus-trial"
    # the younger of two equal slugs gets its id; the older keeps the plain one
    assert listed["docqa: corpus-trial"] == f"docqa/corpus-trial-{ids['corpus-trial']}"
    assert listed["docqa: 员工手册"] == f"docqa/collection-{ids['员工手册']}"
    assert listed["docqa: Q3 Finance_Legal. Übersicht"] == "docqa/q3-finance-legal-ubersicht"
    assert all(re.fullmatch(r"docqa(/[a-z0-9-]+)?", i) for i in listed.values())

    def asked(model: str) -> int:
        return ask(web, "admin", model, question="anything at all").status_code

    for model in [*listed.values(), "docqa/Corpus trial", "docqa/员工手册"]:
        assert asked(model) == 200, model  # slugs, and the names clients were given before
    assert asked(f"docqa/corpus-trial-{ids['Corpus trial']}") == 200  # <slug>-<id> always
    assert asked("docqa/corpus-trial-999999") == 404
    assert asked("docqa/finance ") == 404  # near misses are not guessed


# -- non-streaming --------------------------------------------------------------------------


def test_completion_object(web: WebEnv) -> None:
    resp = ask(web, "alice", "docqa/finance", temperature=0.2, top_p=0.9, max_tokens=64, seed=7)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "docqa/finance"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert SECRET_PHRASE in content and "[1]" in content
    # clients read usage unconditionally; an extractive answer ran no model
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert body["citations"] and body["citations"][0]["n"] == 1
    assert body["citations"][0]["document_name"].endswith("falcon-budget.md")
    source = body["sources"][0]
    assert set(source) == {
        "n",
        "document_id",
        "document_name",
        "title",
        "collection",
        "page_start",
        "page_end",
        "char_start",
        "char_end",
    }
    assert source["collection"] == "finance" and source["page_start"] == 1
    assert body["outcome"] == "answered"


def test_unsupported_question_is_declined_in_the_content(web: WebEnv) -> None:
    resp = ask(web, "alice", "docqa/handbook", question="Who won the 2018 FIFA World Cup?")
    body = resp.get_json()
    assert body["choices"][0]["message"]["content"] == DECLINE_SENTENCES["en"]
    assert body["outcome"] == "not_found" and body["citations"] == []
    assert body["sources"]  # the closest passages, as docqa's extension
    streamed = ask(
        web, "alice", "docqa/handbook", question="Who won the 2018 FIFA World Cup?", stream=True
    )
    chunks = [c for c in parse_sse(streamed.get_data(as_text=True)) if isinstance(c, dict)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == DECLINE_SENTENCES["en"]
    final = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    assert final["outcome"] == "not_found"


def test_handbook_model_searches_only_the_handbook(web: WebEnv) -> None:
    resp = ask(web, "alice", "docqa/handbook", question="What is the hotel limit in London?")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["sources"] and {s["collection"] for s in body["sources"]} == {"handbook"}
    assert "220" in body["choices"][0]["message"]["content"]
    assert not leaks_secret(ask(web, "alice", "docqa/handbook").get_json())


def test_history_system_prompt_and_text_parts(web: WebEnv) -> None:
    body = {
        "model": "docqa",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Where do I book travel?"},
            {"role": "assistant", "content": "Through the travel portal [1]."},
            {"role": "developer", "content": "ignored: only the first system message counts"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the hotel limit"},
                    {"type": "text", "text": "in London?"},
                ],
            },
        ],
        "stream": False,
        "stream_options": None,
        "user": "ignored-by-docqa",
    }
    resp = web.app.test_client().post(COMPLETIONS, json=body, headers=bearer(web.token("bob")))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "220" in resp.get_json()["choices"][0]["message"]["content"]
    # The question, not the history, is what was asked (and audited, on this channel).
    (event, *_) = web.svc.audit.list(action="question")
    assert event.details["channel"] == "openai"
    assert event.details["question"] == "What is the hotel limit\nin London?"


# -- streaming ------------------------------------------------------------------------------


def test_streaming_chunks(web: WebEnv) -> None:
    resp = ask(web, "alice", "docqa/finance", stream=True)
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    assert resp.headers["Cache-Control"].startswith("no-cache")
    payloads = parse_sse(resp.get_data(as_text=True))
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for c in chunks:
        assert c["object"] == "chat.completion.chunk" and c["model"] == "docqa/finance"
        assert len(c["choices"]) == 1 and c["choices"][0]["index"] == 0
    first, *middle, final = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["finish_reason"] is None
    assert middle, "no content chunks"
    for c in middle:
        assert set(c["choices"][0]["delta"]) == {"content"}
        assert c["choices"][0]["finish_reason"] is None
        assert "citations" not in c
    text = "".join(c["choices"][0]["delta"]["content"] for c in middle)
    assert SECRET_PHRASE in text
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["delta"] == {}
    assert final["citations"] and final["citations"][0]["document_name"].endswith(
        "falcon-budget.md"
    )
    assert final["sources"][0]["collection"] == "finance"
    assert "text" not in final["sources"][0]


def test_streaming_usage_chunk(web: WebEnv) -> None:
    resp = ask(web, "bob", stream=True, stream_options={"include_usage": True})
    payloads = parse_sse(resp.get_data(as_text=True))
    assert payloads[-1] == "[DONE]"
    usage_chunk = payloads[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert payloads[-3]["choices"][0]["finish_reason"] == "stop"


def test_client_leaving_closes_the_answer_stream(web: WebEnv) -> None:
    body = {"model": "docqa", "messages": [{"role": "user", "content": "hotel limit London"}]}
    resp = web.app.test_client().post(
        COMPLETIONS, json={**body, "stream": True}, headers=bearer(web.token("bob")), buffered=False
    )
    pieces = iter(resp.response)
    first = next(pieces)
    assert b'"role": "assistant"' in first or b'"role":"assistant"' in first
    resp.close()  # what the WSGI server does when the client goes away
    # The answer stream was closed mid-way: its record says so.
    (event, *_) = web.svc.audit.list(action="question")
    assert event.details["channel"] == "openai"
    assert event.details["finish_reason"] == "cancelled"


# -- access control ---------------------------------------------------------------------------


def test_bob_never_reaches_finance(web: WebEnv) -> None:
    for stream in (False, True):
        resp = ask(web, "bob", "docqa", stream=stream)
        assert resp.status_code == 200
        assert SECRET_PHRASE not in resp.get_data(as_text=True)
        assert "falcon-budget" not in resp.get_data(as_text=True)
        denied = ask(web, "bob", "docqa/finance", stream=stream)
        assert denied.status_code == 404
        error = openai_error(denied)
        assert error["code"] == "not_found" and error["type"] == "invalid_request_error"
    # Exactly like a collection that does not exist.
    assert openai_error(ask(web, "bob", "docqa/no-such-collection"))["code"] == "not_found"
    assert ask(web, "bob", "gpt-4o").status_code == 404


@pytest.mark.both_databases
def test_grant_then_revoke(web: WebEnv) -> None:
    fin, alice = web.collections["finance"], web.users["alice"].user_id
    web.svc.access.grant(fin, "read", user_id=alice)
    for model in ("docqa", "docqa/finance"):
        assert leaks_secret(ask(web, "alice", model).get_json()), model

    web.svc.access.revoke(fin, user_id=alice)
    for stream in (False, True):
        resp = ask(web, "alice", "docqa", stream=stream)
        assert resp.status_code == 200
        assert SECRET_PHRASE not in resp.get_data(as_text=True)
        assert ask(web, "alice", "docqa/finance", stream=stream).status_code == 404
    models = web.app.test_client().get(MODELS, headers=bearer(web.token("alice"))).get_json()
    assert "docqa/finance" not in {m["id"] for m in models["data"]}

    # And bob, granted and revoked the same way.
    bob = web.users["bob"].user_id
    web.svc.access.grant(fin, "read", user_id=bob)
    assert leaks_secret(ask(web, "bob", "docqa/finance").get_json())
    web.svc.access.revoke(fin, user_id=bob)
    assert not leaks_secret(ask(web, "bob", "docqa").get_json())


@pytest.mark.both_databases
def test_deleted_document_is_never_answered(web: WebEnv) -> None:
    admin = bearer(web.token("admin"))
    http = web.app.test_client()
    fin = web.collections["finance"]
    docs = http.get(f"/api/v1/collections/{fin}/documents", headers=admin).get_json()["documents"]
    (secret,) = docs
    assert http.delete(f"/api/v1/documents/{secret['id']}", headers=admin).status_code == 200
    for model in ("docqa", "docqa/finance"):
        for stream in (False, True):
            resp = ask(web, "alice", model, stream=stream)
            assert resp.status_code == 200
            assert SECRET_PHRASE not in resp.get_data(as_text=True), (model, stream)
    web.wait_ingested()  # also after the indexes were republished without it
    assert not leaks_secret(ask(web, "alice", "docqa").get_json())


# -- errors -----------------------------------------------------------------------------------


def test_auth_errors_are_openai_shaped(web: WebEnv) -> None:
    http = web.app.test_client()
    body = {"model": "docqa", "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({}, bearer("dq_wrong"), {"Authorization": "Token abc"}):
        for resp in (
            http.get(MODELS, headers=headers),
            http.post(COMPLETIONS, json=body, headers=headers),
        ):
            assert resp.status_code == 401
            error = openai_error(resp)
            assert error["code"] == "unauthenticated" and error["type"] == "authentication_error"


def test_wrong_methods_and_paths(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("bob"))
    for method, url in [
        ("GET", COMPLETIONS),
        ("DELETE", MODELS),
        ("POST", MODELS),
        ("PUT", COMPLETIONS),
    ]:
        resp = http.open(url, method=method, headers=headers)
        assert resp.status_code == 405, (method, url)
        error = openai_error(resp)
        assert error["code"] == "method_not_allowed" and error["type"] == "invalid_request_error"
    missing = http.get("/v1/embeddings", headers=headers)
    assert missing.status_code == 404 and openai_error(missing)["code"] == "not_found"


BAD_BODIES: list[Any] = [
    {},
    {"model": "docqa"},
    {"messages": [{"role": "user", "content": "hi"}]},
    {"model": 3, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "docqa", "messages": []},
    {"model": "docqa", "messages": "hi"},
    {"model": "docqa", "messages": ["hi"]},
    {"model": "docqa", "messages": [{"role": "user"}]},
    {"model": "docqa", "messages": [{"role": "user", "content": "   "}]},
    {"model": "docqa", "messages": [{"role": "user", "content": 42}]},
    {"model": "docqa", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    {"model": "docqa", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "docqa", "messages": [{"role": "wizard", "content": "x"}]},
    {"model": "docqa", "messages": [{"role": "assistant", "content": "I end the chat"}]},
    {"model": "docqa", "messages": [{"role": "system", "content": "only a system prompt"}]},
    {"model": "docqa", "messages": [{"role": "user", "content": "hi"}] * 501},
]
BAD_OPTIONS: list[dict[str, Any]] = [
    {"stream": "yes"},
    {"stream_options": True},
    {"stream_options": {"include_usage": "yes"}},
    {"temperature": "hot"},
    {"temperature": 3.5},
    {"top_p": 0},
    {"top_p": True},
    {"max_tokens": 0},
    {"max_tokens": 1.5},
    {"max_completion_tokens": "many"},
    {"seed": "lucky"},
    {"n": 2},
]


@pytest.mark.parametrize(
    "body",
    BAD_BODIES
    + [
        {"model": "docqa", "messages": [{"role": "user", "content": "hi"}], **o}
        for o in BAD_OPTIONS
    ],
)
def test_bad_requests_are_400(web: WebEnv, body: Any) -> None:
    resp = web.app.test_client().post(COMPLETIONS, json=body, headers=bearer(web.token("bob")))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = openai_error(resp)
    assert error["code"] == "invalid_input" and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("{oops", "application/json"), ("[]", "application/json"), ("model=docqa", "text/plain")],
)
def test_malformed_bodies_are_400(web: WebEnv, data: str, content_type: str) -> None:
    resp = web.app.test_client().post(
        COMPLETIONS, data=data, content_type=content_type, headers=bearer(web.token("bob"))
    )
    assert resp.status_code == 400
    assert openai_error(resp)["code"] == "invalid_input"


def test_huge_body_is_413(web: WebEnv) -> None:
    content = "x" * (2 * 1024 * 1024 + 1)
    resp = ask(web, "bob", question=content)
    assert resp.status_code == 413
    error = openai_error(resp)
    assert error["code"] == "too_large" and error["type"] == "invalid_request_error"


def test_question_rate_limit(web: WebEnv) -> None:
    web.svc.settings.rate_questions_per_min = 2
    assert ask(web, "bob").status_code == 200
    assert ask(web, "bob").status_code == 200
    resp = ask(web, "bob")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    error = openai_error(resp)
    assert error["code"] == "rate_limited" and error["type"] == "rate_limit_error"
    # Listing models is not a question.
    assert web.app.test_client().get(MODELS, headers=bearer(web.token("bob"))).status_code == 200


def test_session_needs_csrf(web: WebEnv) -> None:
    bob = web.client("bob")
    body = {"model": "docqa", "messages": [{"role": "user", "content": "hotel limit London"}]}
    assert bob.http.post(COMPLETIONS, json=body).status_code == 403
    resp = bob.post(COMPLETIONS, json=body)
    assert resp.status_code == 200 and "220" in resp.get_json()["choices"][0]["message"]["content"]
