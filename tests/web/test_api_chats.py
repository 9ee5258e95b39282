"""/api/v1/chats over the real app: each user's own chats, and nobody else's."""

from __future__ import annotations

from typing import Any

import pytest

from qa.answering.chats import MAX_TITLE_CHARS
from tests.web.conftest import SECRET_PHRASE, Client, WebEnv
from tests.web.test_api_ask import HOTEL, SSE, error_of, sse_events

# Chats store JSON and dates, whose types differ per database.
pytestmark = pytest.mark.both_databases


def create(client: Client, **body: Any) -> dict[str, Any]:
    resp = client.post("/api/v1/chats", json=body)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    chat: dict[str, Any] = resp.get_json()["chat"]
    return chat


def test_create_list_get(web: WebEnv) -> None:
    alice = web.client("alice")
    assert alice.get("/api/v1/chats").get_json() == {"chats": []}
    first = create(alice)
    assert first["title"] == "New chat" and first["collection_ids"] == []
    assert len(first["id"]) == 32
    handbook = web.collections["handbook"]
    second = create(alice, title="  Travel   rules ", collection_ids=[handbook, handbook])
    assert second["title"] == "Travel rules"
    assert second["collection_ids"] == [handbook]
    listed = alice.get("/api/v1/chats").get_json()["chats"]
    assert {c["id"] for c in listed} == {first["id"], second["id"]}
    assert set(listed[0]) == {"id", "title", "collection_ids", "created_at", "updated_at"}
    got = alice.get(f"/api/v1/chats/{second['id']}").get_json()
    assert got == {"chat": second, "messages": []}


def test_create_without_a_body(web: WebEnv) -> None:
    resp = web.client("alice").post("/api/v1/chats")
    assert resp.status_code == 201
    assert resp.get_json()["chat"]["title"] == "New chat"


def test_the_most_recently_used_chat_comes_first(web: WebEnv) -> None:
    alice = web.client("alice")
    older = create(alice, title="older")
    create(alice, title="newer")
    alice.post("/api/v1/ask", json={"question": HOTEL, "chat_id": older["id"]})
    titles = [c["title"] for c in alice.get("/api/v1/chats").get_json()["chats"]]
    assert titles == ["older", "newer"]


def test_messages_come_with_their_meta(web: WebEnv) -> None:
    alice = web.client("alice")
    chat = create(alice)
    resp = alice.post("/api/v1/ask", json={"question": HOTEL, "chat_id": chat["id"]}, headers=SSE)
    sources = sse_events(resp.get_data(as_text=True))[0]["sources"]
    messages = alice.get(f"/api/v1/chats/{chat['id']}").get_json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert set(messages[1]) == {
        "id",
        "role",
        "content",
        "meta",
        "created_at",
        "unavailable_sources",
        "outcome",
        "feedback",
    }
    assert messages[0]["outcome"] is None and messages[1]["outcome"] == "answered"
    meta = messages[1]["meta"]
    assert {"sources", "citations", "highlights", "mode", "finish_reason"} <= set(meta)
    stored = meta["sources"][0]
    assert stored["document_id"] == sources[0]["document_id"]
    assert stored["page_start"] == sources[0]["page_start"]
    assert messages[0]["meta"] == {}


def test_rename_and_set_collections(web: WebEnv) -> None:
    alice = web.client("alice")
    chat = create(alice)
    url = f"/api/v1/chats/{chat['id']}"
    resp = alice.patch(url, json={"title": "Hotels"})
    assert resp.status_code == 200 and resp.get_json()["chat"]["title"] == "Hotels"
    finance = web.collections["finance"]
    resp = alice.patch(url, json={"collection_ids": [finance]})
    assert resp.get_json()["chat"] == {**resp.get_json()["chat"], "collection_ids": [finance]}
    resp = alice.patch(url, json={"title": "Both", "collection_ids": []})
    assert (resp.get_json()["chat"]["title"], resp.get_json()["chat"]["collection_ids"]) == (
        "Both",
        [],
    )
    assert alice.get(url).get_json()["chat"]["title"] == "Both"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": 5},
        {"title": "t" * (MAX_TITLE_CHARS + 1)},
        {"collection_ids": "1"},
        {"collection_ids": [1.5]},
    ],
)
def test_bad_updates_are_400(web: WebEnv, body: dict[str, Any]) -> None:
    alice = web.client("alice")
    chat = create(alice, title="keep")
    resp = alice.patch(f"/api/v1/chats/{chat['id']}", json=body)
    assert error_of(resp, 400) == "invalid_input"
    assert alice.get(f"/api/v1/chats/{chat['id']}").get_json()["chat"]["title"] == "keep"


@pytest.mark.parametrize(
    ("method", "data", "content_type"),
    [
        ("post", "title=x", "application/x-www-form-urlencoded"),
        ("post", "{", "application/json"),
        ("post", "[1]", "application/json"),
        ("patch", "title", "text/plain"),
        ("patch", "", "application/json"),
    ],
)
def test_non_json_bodies_are_400(web: WebEnv, method: str, data: str, content_type: str) -> None:
    alice = web.client("alice")
    chat = create(alice)
    url = "/api/v1/chats" if method == "post" else f"/api/v1/chats/{chat['id']}"
    resp = getattr(alice, method)(url, data=data, content_type=content_type)
    assert error_of(resp, 400) == "invalid_input"


def test_bad_create_bodies_are_400(web: WebEnv) -> None:
    alice = web.client("alice")
    for body in ({"title": ""}, {"title": ["x"]}, {"collection_ids": [True]}):
        assert error_of(alice.post("/api/v1/chats", json=body), 400) == "invalid_input"
    assert alice.get("/api/v1/chats").get_json()["chats"] == []


def test_unreadable_collections_are_404(web: WebEnv) -> None:
    bob = web.client("bob")
    finance = web.collections["finance"]
    resp = bob.post("/api/v1/chats", json={"collection_ids": [finance]})
    assert error_of(resp, 404) == "not_found"
    chat = create(bob)
    resp = bob.patch(f"/api/v1/chats/{chat['id']}", json={"collection_ids": [finance]})
    assert error_of(resp, 404) == "not_found"
    assert bob.get(f"/api/v1/chats/{chat['id']}").get_json()["chat"]["collection_ids"] == []


def test_delete(web: WebEnv) -> None:
    alice = web.client("alice")
    chat = create(alice)
    alice.post("/api/v1/ask", json={"question": HOTEL, "chat_id": chat["id"]})
    resp = alice.delete(f"/api/v1/chats/{chat['id']}")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert error_of(alice.get(f"/api/v1/chats/{chat['id']}"), 404) == "not_found"
    assert error_of(alice.delete(f"/api/v1/chats/{chat['id']}"), 404) == "not_found"
    assert alice.get("/api/v1/chats").get_json()["chats"] == []


def test_unknown_chat_is_404(web: WebEnv) -> None:
    alice = web.client("alice")
    for url in ("/api/v1/chats/nope", f"/api/v1/chats/{'0' * 32}"):
        assert error_of(alice.get(url), 404) == "not_found"
        assert error_of(alice.patch(url, json={"title": "x"}), 404) == "not_found"
        assert error_of(alice.delete(url), 404) == "not_found"


def test_another_users_chat_is_404(web: WebEnv) -> None:
    alice, bob = web.client("alice"), web.client("bob")
    finance = web.collections["finance"]
    chat = create(alice, title="Falcon budget", collection_ids=[finance])
    alice.post(
        "/api/v1/ask",
        json={"question": f"{SECRET_PHRASE} budget?", "chat_id": chat["id"]},
    )
    url = f"/api/v1/chats/{chat['id']}"
    for resp in (bob.get(url), bob.patch(url, json={"title": "mine"}), bob.delete(url)):
        assert error_of(resp, 404) == "not_found"
        assert SECRET_PHRASE not in resp.get_data(as_text=True)
    assert bob.get("/api/v1/chats").get_json()["chats"] == []
    kept = alice.get(url).get_json()
    assert kept["chat"]["title"] == "Falcon budget" and len(kept["messages"]) == 2
    assert SECRET_PHRASE in kept["messages"][1]["content"]


def test_api_token_manages_chats_without_csrf(web: WebEnv) -> None:
    auth = {"Authorization": f"Bearer {web.token('bob')}"}
    http = web.app.test_client()
    resp = http.post("/api/v1/chats", json={"title": "via API"}, headers=auth)
    assert resp.status_code == 201
    chat_id = resp.get_json()["chat"]["id"]
    assert http.get("/api/v1/chats", headers=auth).get_json()["chats"][0]["id"] == chat_id
    assert http.delete(f"/api/v1/chats/{chat_id}", headers=auth).status_code == 204


def test_sign_in_and_csrf_are_required(web: WebEnv) -> None:
    anonymous = web.app.test_client()
    assert error_of(anonymous.get("/api/v1/chats"), 401) == "unauthenticated"
    assert error_of(anonymous.post("/api/v1/chats", json={}), 401) == "unauthenticated"
    alice = web.client("alice")
    chat = create(alice)
    resp = alice.http.delete(f"/api/v1/chats/{chat['id']}")  # no CSRF header
    assert error_of(resp, 403) == "forbidden"
    assert alice.get(f"/api/v1/chats/{chat['id']}").status_code == 200


def test_wrong_methods_are_405_json(web: WebEnv) -> None:
    alice = web.client("alice")
    chat = create(alice)
    for method, url in (
        ("put", "/api/v1/chats"),
        ("delete", "/api/v1/chats"),
        ("patch", "/api/v1/chats"),
        ("post", f"/api/v1/chats/{chat['id']}"),
        ("put", f"/api/v1/chats/{chat['id']}"),
    ):
        assert error_of(getattr(alice, method)(url), 405) == "method_not_allowed"


def ask_in_chat(client: Client, collection: int) -> tuple[str, list[dict[str, Any]]]:
    chat = create(client, collection_ids=[collection])
    body = {"question": HOTEL, "chat_id": chat["id"], "collection_ids": [collection]}
    resp = client.post("/api/v1/ask", json=body, headers=SSE)
    sources: list[dict[str, Any]] = sse_events(resp.get_data(as_text=True))[0]["sources"]
    assert sources
    return chat["id"], sources


def stored_answer(client: Client, chat_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/api/v1/chats/{chat_id}").get_json()["messages"][1]
    return answer


def test_a_revoked_grant_redacts_the_stored_sources(web: WebEnv) -> None:
    alice, bob = web.client("alice"), web.client("bob")
    handbook = web.collections["handbook"]
    alice_chat, sources = ask_in_chat(alice, handbook)
    bob_chat, _ = ask_in_chat(bob, handbook)
    before = stored_answer(alice, alice_chat)
    assert before["unavailable_sources"] == []
    web.svc.access.revoke(handbook, user_id=web.users["alice"].user_id)
    after = stored_answer(alice, alice_chat)
    numbers = sorted(s["n"] for s in sources)
    assert after["content"] == before["content"]  # the answer was shown already; it stays
    assert after["unavailable_sources"] == numbers
    assert after["meta"]["sources"] == [{"n": n, "available": False} for n in numbers]
    assert all(c == {"n": c["n"], "available": False} for c in after["meta"]["citations"])
    assert after["meta"]["highlights"] == []
    text = str(after["meta"])
    assert sources[0]["document_name"] not in text and sources[0]["document_id"] not in text
    # bob still reads the handbook: his chat is unchanged
    kept = stored_answer(bob, bob_chat)
    assert kept["unavailable_sources"] == []
    assert all("document_id" in s for s in kept["meta"]["sources"])


def test_a_deleted_document_is_no_longer_available(web: WebEnv) -> None:
    alice = web.client("alice")
    chat_id, sources = ask_in_chat(alice, web.collections["handbook"])
    gone = sources[0]["document_id"]
    web.svc.library.delete_documents(web.users["admin"], [gone])
    answer = stored_answer(alice, chat_id)
    redacted = {s["n"] for s in sources if s["document_id"] == gone}
    assert set(answer["unavailable_sources"]) == redacted
    for stored in answer["meta"]["sources"]:
        if stored["n"] in redacted:
            assert stored == {"n": stored["n"], "available": False}
        else:
            assert stored["document_id"] != gone


def test_search_finds_chats_by_title_or_message(web: WebEnv) -> None:
    alice = web.client("alice")
    create(alice, title="Travel rules")
    by_answer = create(alice, title="Something else")
    alice.post("/api/v1/ask", json={"question": HOTEL, "chat_id": by_answer["id"]})
    create(alice, title="员工福利 问题")
    create(alice, title="100% sure_thing")
    web.client("bob").post("/api/v1/chats", json={"title": "Travel for bob"})

    def found(q: str) -> list[str]:
        resp = alice.get("/api/v1/chats", query_string={"q": q})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return sorted(c["title"] for c in resp.get_json()["chats"])

    assert found("RULES") == ["Travel rules"]  # case-insensitive
    assert "Travel for bob" not in found("travel")  # only the caller's own chats
    assert found("london") == ["Something else"]  # in the question asked in it
    assert found("福利") == ["员工福利 问题"]
    assert found("0%") == ["100% sure_thing"] and found("%") == ["100% sure_thing"]
    assert found("100_") == []  # "_" is a character, not a wildcard for the "%"
    assert found("  ") == sorted(c["title"] for c in alice.get("/api/v1/chats").get_json()["chats"])
    assert found("no such words anywhere") == []
    too_long = alice.get("/api/v1/chats", query_string={"q": "x" * 201})
    assert too_long.status_code == 400 and "q" in too_long.get_json()["error"]["message"]
