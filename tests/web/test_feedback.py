"""Feedback on answers: a vote on one's own answer (and only there), replaced by a new
vote, kept when the chat goes; the admins' view with filters and a CSV export."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from qa.answering.feedback import FeedbackFilter
from tests.web.conftest import Client, WebEnv
from tests.web.test_api_ask import HOTEL

pytestmark = pytest.mark.both_databases


def asked(client: Client, question: str = HOTEL) -> tuple[str, dict[str, Any]]:
    """A chat with one answered question: (chat id, the stored answer)."""
    chat = client.post("/api/v1/chats", json={}).get_json()["chat"]
    resp = client.post("/api/v1/ask", json={"question": question, "chat_id": chat["id"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    messages = client.get(f"/api/v1/chats/{chat['id']}").get_json()["messages"]
    # the done event names the stored answer, so a client can vote without reading the chat
    assert resp.get_json()["done"]["message_id"] == messages[-1]["id"]
    return chat["id"], messages[-1]


def vote(client: Client, chat_id: str, message_id: int, **body: Any) -> Any:
    return client.put(f"/api/v1/chats/{chat_id}/messages/{message_id}/feedback", json=body)


def test_a_vote_is_stored_with_the_answer_and_replaced_by_the_next(web: WebEnv) -> None:
    alice = web.client("alice")
    chat_id, answer = asked(alice)
    assert answer["role"] == "assistant" and answer["feedback"] is None
    resp = vote(alice, chat_id, answer["id"], rating="down", comment="  Missing Paris.  ")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"feedback": {"rating": "down", "comment": "Missing Paris."}}
    assert vote(alice, chat_id, answer["id"], rating="up").status_code == 200
    messages = alice.get(f"/api/v1/chats/{chat_id}").get_json()["messages"]
    assert messages[-1]["feedback"] == {"rating": "up", "comment": ""}
    assert messages[0]["feedback"] is None  # the question
    (row,) = web.svc.feedback.list(FeedbackFilter())
    assert (row.username, row.rating) == ("alice", "up")
    assert row.question == HOTEL and "EUR 220" in row.answer
    assert row.sources and {"n", "document_name", "page_start"} <= set(row.sources[0])
    assert "text" not in row.sources[0]
    assert row.mode == "extractive" and row.outcome == "answered"

    # The chat goes; the feedback stays, with its copies.
    assert alice.delete(f"/api/v1/chats/{chat_id}").status_code == 204
    (kept,) = web.svc.feedback.list(FeedbackFilter())
    assert kept.message_id is None and kept.question == HOTEL


def test_votes_only_on_ones_own_answers(web: WebEnv) -> None:
    alice, bob = web.client("alice"), web.client("bob")
    chat_id, answer = asked(alice)
    question_id = alice.get(f"/api/v1/chats/{chat_id}").get_json()["messages"][0]["id"]
    assert vote(bob, chat_id, answer["id"], rating="up").status_code == 404
    assert vote(alice, chat_id, question_id, rating="up").status_code == 404
    assert vote(alice, "nochat", answer["id"], rating="up").status_code == 404
    assert vote(alice, chat_id, 10**9, rating="up").status_code == 404
    other_chat, _ = asked(alice)
    assert vote(alice, other_chat, answer["id"], rating="up").status_code == 404
    for bad in ({"rating": "meh"}, {}, {"rating": "up", "comment": "x" * 2001}, {"rating": 1}):
        resp = vote(alice, chat_id, answer["id"], **bad)
        assert resp.status_code == 400, bad
        assert resp.get_json()["error"]["message"]
    assert web.svc.feedback.list(FeedbackFilter()) == []


def test_the_admins_view_filters_and_exports_csv(web: WebEnv) -> None:
    alice, bob, admin = web.client("alice"), web.client("bob"), web.client("admin")
    chat_a, answer_a = asked(alice)
    chat_b, answer_b = asked(bob, "How many days per week may employees work remotely?")
    vote(alice, chat_a, answer_a["id"], rating="down", comment='=HYPERLINK("http://x")')
    vote(bob, chat_b, answer_b["id"], rating="up")

    page = admin.get("/admin/feedback").get_data(as_text=True)
    assert page.count('data-rating="') == 2 and "helpful: 1 · ▼ not helpful: 1" in page
    down = admin.get("/admin/feedback?rating=down").get_data(as_text=True)
    assert down.count('data-rating="down"') == 1 and 'data-rating="up"' not in down
    assert (
        admin.get("/admin/feedback?user=bob&comment=1")
        .get_data(as_text=True)
        .count('data-rating="')
        == 0
    )
    assert admin.get("/admin/feedback?rating=sideways").status_code == 400

    resp = admin.get("/admin/feedback.csv?rating=down")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == 1 and rows[0]["username"] == "alice" and rows[0]["rating"] == "down"
    assert rows[0]["comment"].startswith("'=")  # a spreadsheet shows it, does not run it
    assert rows[0]["question"] == HOTEL and "travel-and-expenses.pdf" in rows[0]["sources"]

    for who in (alice, web.client("editor")):
        assert who.get("/admin/feedback").status_code == 403
        assert who.get("/admin/feedback.csv").status_code == 403
