"""Sessions end on the server (issue 12, defect 1): a cookie saved before sign-out, a
password reset, a role change or disabling the account no longer works, through the
portal and the API; "sign out everywhere"; API tokens keep working until revoked; each
end is in the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import PASSWORDS, Client, WebEnv, csrf_from

COOKIE = "docqa_session"


def _saved_cookie(c: Client) -> str:
    cookie = c.http.get_cookie(COOKIE)
    assert cookie is not None, "not signed in"
    return str(cookie.value)


def _replay(web: WebEnv, cookie: str) -> FlaskClient:
    """A second browser holding a copy of a saved session cookie."""
    http = web.app.test_client()
    http.set_cookie(COOKIE, cookie)
    return http


def _me(http: FlaskClient) -> int:
    return int(http.get("/api/v1/me").status_code)


def _portal(http: FlaskClient) -> int:
    return int(http.get("/").status_code)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _events(web: WebEnv, action: str) -> list[Any]:
    return web.svc.audit.list(action=action)


@pytest.mark.both_databases
def test_sign_out_ends_the_session_for_a_saved_cookie(web: WebEnv) -> None:
    c = web.client("alice")
    saved = _saved_cookie(c)
    assert _me(_replay(web, saved)) == 200
    assert c.post("/logout").status_code == 302
    replay = _replay(web, saved)
    assert _me(replay) == 401
    assert _portal(replay) == 302  # the portal sends it to the sign-in page
    assert [e.username for e in _events(web, "sign_out")] == ["alice"]


@pytest.mark.both_databases
def test_password_reset_ends_every_session_but_not_tokens(web: WebEnv) -> None:
    laptop, phone = web.client("alice"), web.client("alice")
    saved = [_saved_cookie(laptop), _saved_cookie(phone)]
    token = web.token("alice")
    admin = web.client("admin")
    uid = web.users["alice"].user_id
    resp = admin.post(f"/admin/users/{uid}/password", data={"password": "a new password 2"})
    assert resp.status_code == 302
    for cookie in saved:
        assert _me(_replay(web, cookie)) == 401
        assert _portal(_replay(web, cookie)) == 302
    assert _me(laptop.http) == 401
    api = web.app.test_client()
    assert api.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    [ended] = _events(web, "sessions_ended")
    assert (ended.username, ended.target) == ("admin", "alice")
    assert ended.details == {"user_id": uid, "reason": ["password"], "sessions": 2}
    # the new password signs in; the admin's own session is untouched
    fresh = web.anonymous()
    form = {"username": "alice", "password": "a new password 2", "csrf_token": fresh.csrf}
    assert fresh.post("/login", data=form).status_code == 302
    assert _me(fresh.http) == 200
    assert _me(admin.http) == 200


def test_role_change_ends_sessions_a_name_change_does_not(web: WebEnv) -> None:
    bob = web.client("bob")
    saved = _saved_cookie(bob)
    admin = web.client("admin")
    uid = web.users["bob"].user_id
    form = {"role": "reader", "display_name": "Bob B."}
    assert admin.post(f"/admin/users/{uid}/update", data=form).status_code == 302
    assert _me(_replay(web, saved)) == 200  # same role: nothing that grants or takes away
    form = {"role": "editor", "display_name": "Bob B."}
    assert admin.post(f"/admin/users/{uid}/update", data=form).status_code == 302
    assert _me(_replay(web, saved)) == 401
    assert [e.details["reason"] for e in _events(web, "sessions_ended")] == [["role"]]


@pytest.mark.both_databases
def test_disabling_ends_sessions_and_enabling_does_not_revive_them(web: WebEnv) -> None:
    bob = web.client("bob")
    saved = _saved_cookie(bob)
    admin = web.client("admin")
    uid = web.users["bob"].user_id
    assert admin.post(f"/admin/users/{uid}/disable").status_code == 302
    assert _me(_replay(web, saved)) == 401
    assert admin.post(f"/admin/users/{uid}/enable").status_code == 302
    assert _me(_replay(web, saved)) == 401
    assert _portal(_replay(web, saved)) == 302
    assert [e.details["reason"] for e in _events(web, "sessions_ended")] == [["disabled"]]


@pytest.mark.both_databases
def test_sign_out_everywhere_ends_every_session_and_keeps_tokens(web: WebEnv) -> None:
    laptop, phone, other = web.client("alice"), web.client("alice"), web.client("bob")
    saved = _saved_cookie(phone)
    token = web.token("alice")
    resp = laptop.post("/logout/everywhere")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/login"
    assert _me(laptop.http) == 401
    assert _me(phone.http) == 401
    assert _me(_replay(web, saved)) == 401
    assert _me(other.http) == 200  # someone else's session is theirs
    api = web.app.test_client()
    assert api.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    [event] = _events(web, "sign_out_everywhere")
    assert (event.username, event.details) == ("alice", {"sessions": 2})


def test_sign_out_everywhere_needs_csrf_and_a_session(web: WebEnv) -> None:
    alice = web.client("alice")
    assert alice.http.post("/logout/everywhere").status_code == 403  # no CSRF token
    assert _me(alice.http) == 200
    anonymous = web.anonymous()
    assert anonymous.post("/logout/everywhere").status_code == 302  # to the sign-in page
    assert _events(web, "sign_out_everywhere") == []


def test_admin_resetting_their_own_password_stays_signed_in(web: WebEnv) -> None:
    admin, elsewhere = web.client("admin"), web.client("admin")
    uid = web.users["admin"].user_id
    resp = admin.post(f"/admin/users/{uid}/password", data={"password": "admin-password-2"})
    assert resp.status_code == 302
    assert _me(admin.http) == 200  # a new session for the browser that made the change
    assert _me(elsewhere.http) == 401
    # The new session has its own CSRF token; the page gives it out as before.
    admin.csrf = csrf_from(admin.get("/admin/users").get_data(as_text=True))
    assert admin.post("/logout").status_code == 302


def test_revoked_token_stops_sessions_unaffected(web: WebEnv) -> None:
    alice = web.client("alice")
    plaintext, token = web.svc.accounts.create_token(web.users["alice"].user_id, "ci")
    assert alice.post(f"/admin/tokens/{token.id}/revoke").status_code == 302
    api = web.app.test_client()
    assert api.get("/api/v1/me", headers=_bearer(plaintext)).status_code == 401
    assert _me(alice.http) == 200


def test_cookie_of_an_earlier_version_is_signed_out(web: WebEnv) -> None:
    # Before server-side sessions the cookie held only {"uid": <id>}: it must not work.
    http = web.app.test_client()
    with http.session_transaction() as sess:
        sess["uid"] = web.users["alice"].user_id
    assert _me(http) == 401
    assert PASSWORDS["alice"]  # the account itself is fine: it only has to sign in again
