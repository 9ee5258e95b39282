"""Hostile input stops at the boundary (issue 12, defect 3): ids beyond the database's
integers, strings no database can store, JSON nested deeper than a parser should follow.
Each is a 400 or a 404, never a 500, and nothing of it is stored.
"""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from qa.limits import MAX_INT_ID
from qa.store.db.models import User
from tests.web.conftest import WebEnv

# Integer overflow and text encoding fail differently per database.
pytestmark = pytest.mark.both_databases

#: one past the 32-bit ids, one past SQLite's 64-bit integers, and far beyond both
HUGE_IDS = [str(MAX_INT_ID + 1), str(2**63), "99999999999999999999"]
JSON = {"Accept": "application/json"}
#: JSON escapes of strings no database column should hold
BAD_STRINGS = {
    "lone high surrogate": r"hi \ud800",
    "lone low surrogate": r"hi \udc80 there",
    "NUL": r"a\u0000b",
}


USER_SAYS = '{"role": "user", "content": "%s"}'


def _int_routes(web: WebEnv) -> list[tuple[str, str]]:
    """(method, rule) of every route with an integer id in its path."""
    out = []
    for rule in web.app.url_map.iter_rules():
        if "<int:" in rule.rule:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((method, rule.rule))
    return out


def test_ids_beyond_the_database_range_are_404_on_every_route(web: WebEnv) -> None:
    admin = web.client("admin")
    routes = _int_routes(web)
    assert len(routes) > 20  # the API's and the admin console's id routes
    answers = {}
    for method, rule in routes:
        # and more digits than Python parses into an int (4,300)
        for big in [*HUGE_IDS, "9" * 5000]:
            url = re.sub(r"<int:\w+>", big, rule)
            resp = admin.http.open(
                url,
                method=method,
                headers={**JSON, "X-CSRF-Token": admin.csrf or ""},
                json={"name": "renamed"} if method in ("PATCH", "POST") else None,
            )
            answers[f"{method} {url}"] = resp.status_code
            resp.close()
    wrong = {call: status for call, status in answers.items() if status != 404}
    assert not wrong, wrong
    # The session survived the walk: the ids were refused, not the caller.
    assert admin.get("/api/v1/me").status_code == 200


def test_ids_beyond_the_range_in_admin_forms_are_400(web: WebEnv) -> None:
    admin = web.client("admin")
    hb = web.collections["handbook"]
    created = admin.post("/admin/groups", data={"name": "team", "csrf_token": admin.csrf})
    assert created.status_code == 302
    group = web.svc.accounts.list_groups()[0][0].id
    for big in HUGE_IDS:
        for url, form in [
            (f"/admin/groups/{group}/members", {"user_id": big}),
            (f"/admin/collections/{hb}/grants", {"principal": f"user:{big}", "permission": "read"}),
            (f"/admin/collections/{hb}/grants/revoke", {"principal": f"group:{big}"}),
        ]:
            resp = admin.http.post(url, data={**form, "csrf_token": admin.csrf}, headers=JSON)
            assert resp.status_code == 400, (url, big, resp.status_code)
            assert "id" in resp.get_json()["error"]["message"]


def test_ids_beyond_the_range_in_json_bodies_are_400(web: WebEnv) -> None:
    bob = web.client("bob")
    for big in HUGE_IDS:
        for url in ("/api/v1/ask", "/api/v1/chats"):
            resp = bob.post(url, json={"question": "hotel limit?", "collection_ids": [int(big)]})
            assert resp.status_code == 400, (url, big, resp.status_code)
            assert "collection_ids[0]" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("kind", sorted(BAD_STRINGS))
def test_strings_no_database_can_hold_are_400_and_not_stored(web: WebEnv, kind: str) -> None:
    bad = BAD_STRINGS[kind]
    bob = web.client("bob")
    chat = bob.post("/api/v1/chats", json={"title": "mine"}).get_json()["chat"]["id"]
    calls = [
        ("POST", "/api/v1/ask", '{"question": "%s"}'),
        ("POST", "/v1/chat/completions", '{"model": "docqa", "messages": [' + USER_SAYS + "]}"),
        ("POST", "/api/v1/chats", '{"title": "%s"}'),
        ("PATCH", f"/api/v1/chats/{chat}", '{"title": "%s"}'),
        ("POST", "/api/v1/summaries", '{"document_id": "%s"}'),
        ("PUT", "/api/v1/me/preferences", '{"system_prompt": "%s"}'),
    ]
    for method, url, template in calls:
        body = template.replace("%s", bad)
        resp = bob.http.open(
            url,
            method=method,
            data=body,
            content_type="application/json",
            headers={"X-CSRF-Token": bob.csrf or ""},
        )
        assert resp.status_code == 400, (method, url, resp.status_code)
        message = resp.get_json()["error"]["message"]
        assert "not a JSON object" not in message, (url, message)  # it is one
        assert re.search(r"surrogate|NUL|unicode", message), (url, message)
    me = bob.get("/api/v1/me")
    assert me.status_code == 200
    assert me.get_json()["preferences"] == {}
    titles = [c["title"] for c in bob.get("/api/v1/chats").get_json()["chats"]]
    assert titles == ["mine"]


def test_deeply_nested_json_is_400(web: WebEnv) -> None:
    bob = web.client("bob")
    for body in ("[" * 100_000, '{"question": ' + "[" * 100_000, '{"a": ' * 50_000):
        resp = bob.post("/api/v1/ask", data=body, content_type="application/json")
        assert resp.status_code == 400
        assert "nested" in resp.get_json()["error"]["message"]


def _store_preferences(web: WebEnv, username: str, prefs: dict[str, str]) -> int:
    """Write ``prefs`` straight to the user's row, as an older docqa could; its user id."""
    uid = web.users[username].user_id
    with web.svc.db.session() as session:
        session.execute(sa.update(User).where(User.id == uid).values(preferences=prefs))
        session.commit()
    return uid


def _stored_preferences(web: WebEnv, uid: int) -> dict[str, str]:
    with web.svc.db.session() as session:
        stored = session.get(User, uid)
        assert stored is not None
        return dict(stored.preferences)


def test_stored_preferences_with_lone_surrogates_are_repaired(web: WebEnv) -> None:
    """Before the boundary refused them, such preferences were stored (JSON columns keep
    the escape), and every later GET /me of that user failed; they are repaired on read."""
    prefs = {"system_prompt": "be brief \ud800 please", "theme": "light"}
    uid = _store_preferences(web, "alice", prefs)
    alice = web.client("alice")
    me = alice.get("/api/v1/me")
    assert me.status_code == 200
    assert me.get_json()["preferences"] == {
        "system_prompt": "be brief \ufffd please",
        "theme": "light",
    }
    # Repaired in the database too, not only in the answer.
    stored = _stored_preferences(web, uid)
    json.dumps(stored).encode("utf-8")
    assert stored["system_prompt"] == "be brief \ufffd please"


def test_stored_preferences_with_lone_surrogates_are_repaired_when_changed(web: WebEnv) -> None:
    """Changing such preferences before any read of them merges into the repaired ones:
    the answer (and what is stored) is Unicode text, not a 500 when it is encoded."""
    uid = _store_preferences(web, "alice", {"system_prompt": "be brief \ud800 please"})
    alice = web.client("alice")
    resp = alice.put("/api/v1/me/preferences", json={"theme": "dark"})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["preferences"] == {
        "system_prompt": "be brief \ufffd please",
        "theme": "dark",
    }
    assert _stored_preferences(web, uid)["system_prompt"] == "be brief \ufffd please"
