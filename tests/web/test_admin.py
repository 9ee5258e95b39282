"""The admin console pages (everything but uploads; see test_admin_upload.py).

Real app, real services and database: every change is checked through the services and
the audit log, not only through the page that reports it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from qa.answering.decline import DECLINE_SENTENCES
from qa.errors import Unauthenticated
from tests.web.conftest import PASSWORDS, Client, WebEnv


def ok_page(client: Client, url: str) -> str:
    resp = client.get(url)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "text/html"
    return str(resp.get_data(as_text=True))


def post_ok(client: Client, url: str, data: dict[str, Any], follow: bool = True) -> str:
    """A form post that must redirect (PRG); returns the page it redirects to."""
    resp = client.post(url, data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:800]
    if not follow:
        return ""
    return ok_page(client, resp.headers["Location"])


def post_err(client: Client, url: str, data: dict[str, Any], status: int) -> str:
    resp = client.post(url, data=data)
    body = str(resp.get_data(as_text=True))
    assert resp.status_code == status, body[:800]
    return body


def actions(env: WebEnv, action: str) -> list[Any]:
    return env.svc.audit.list(action=action, limit=100)


def user_id(env: WebEnv, username: str) -> int:
    return next(u.id for u in env.svc.accounts.list_users() if u.username == username)


# --- who may open what ---------------------------------------------------------------------

CONSOLE_PAGES = ["/admin", "/admin/collections"]
ADMIN_PAGES = ["/admin/users", "/admin/groups", "/admin/settings", "/admin/audit"]


def test_anonymous_is_sent_to_sign_in(web: WebEnv) -> None:
    anon = web.anonymous()
    for url in [*CONSOLE_PAGES, *ADMIN_PAGES, "/admin/tokens"]:
        resp = anon.get(url)
        assert resp.status_code == 302, url
        assert resp.headers["Location"].startswith("/login?next=")
    resp = anon.get(
        f"/admin/collections/{web.collections['handbook']}/documents.json",
        headers={"Accept": "application/json"},
    )
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthenticated"


def test_reader_gets_403_except_for_tokens(web: WebEnv) -> None:
    bob = web.client("bob")
    hb = web.collections["handbook"]
    for url in [*CONSOLE_PAGES, *ADMIN_PAGES, f"/admin/collections/{hb}"]:
        resp = bob.get(url)
        assert resp.status_code == 403, url
        assert "admin-nav" in resp.get_data(as_text=True)  # still a console page, no 500
    resp = bob.get(f"/admin/collections/{hb}/documents.json")
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "forbidden"
    post_err(bob, "/admin/collections", {"name": "mine"}, 403)
    post_err(bob, f"/admin/collections/{hb}/reindex", {}, 403)
    page = ok_page(bob, "/admin/tokens")
    # A reader's sub-nav offers only what they may open.
    assert 'id="nav-tokens"' in page
    for nav in ("nav-collections", "nav-users", "nav-groups", "nav-settings", "nav-audit"):
        assert f'id="{nav}"' not in page


def test_editor_limits(web: WebEnv) -> None:
    ed = web.client("editor")
    hb, fin = web.collections["handbook"], web.collections["finance"]
    page = ok_page(ed, "/admin")
    assert "handbook" in page and "finance" not in page
    assert 'id="nav-collections"' in page and 'id="nav-users"' not in page
    assert ed.get(f"/admin/collections/{fin}").status_code == 404
    assert ed.get(f"/admin/collections/{fin}/documents.json").status_code == 404
    post_err(ed, f"/admin/collections/{fin}/reindex", {}, 404)
    post_err(ed, f"/admin/collections/{fin}/delete", {"confirm": "finance"}, 404)
    for url in ADMIN_PAGES:
        assert ed.get(url).status_code == 403, url
    post_err(ed, "/admin/users", {"username": "x", "password": "p" * 10, "role": "admin"}, 403)
    post_err(ed, "/admin/groups", {"name": "team"}, 403)
    post_err(ed, "/admin/settings", {"system_prompt": "x"}, 403)
    bob = user_id(web, "bob")
    post_err(ed, f"/admin/collections/{hb}/grants", {"principal": f"user:{bob}"}, 403)
    post_err(ed, f"/admin/collections/{hb}/grants/revoke", {"principal": f"user:{bob}"}, 403)


def test_editor_sees_grants_of_writable_collection_read_only(web: WebEnv) -> None:
    page = ok_page(web.client("editor"), f"/admin/collections/{web.collections['handbook']}")
    assert 'id="access"' in page and "alice" in page
    assert 'id="grant-form"' not in page and "grants/revoke" not in page
    assert 'id="upload-input"' in page and 'id="drop-zone"' in page


def test_api_tokens_do_not_open_the_console(web: WebEnv) -> None:
    http = web.app.test_client()
    auth = {"Authorization": f"Bearer {web.token('admin')}"}
    assert http.get("/admin", headers=auth).status_code == 403
    assert http.post("/admin/tokens", data={"name": "minted"}, headers=auth).status_code == 403
    assert web.svc.accounts.list_tokens(web.users["admin"].user_id)[0].name == "test"


def test_wrong_methods_are_405(web: WebEnv) -> None:
    admin = web.client("admin")
    hb = web.collections["handbook"]
    cases = [
        ("post", "/admin"),
        ("get", f"/admin/collections/{hb}/delete"),
        ("get", f"/admin/collections/{hb}/upload"),
        ("post", f"/admin/collections/{hb}/documents.json"),
        ("get", f"/admin/collections/{hb}/grants"),
        ("put", "/admin/users"),
        ("get", "/admin/users/1/delete"),
        ("delete", "/admin/groups"),
        ("get", "/admin/tokens/1/revoke"),
        ("patch", "/admin/settings"),
        ("post", "/admin/audit"),
    ]
    for method, url in cases:
        resp = getattr(admin, method)(url)
        assert resp.status_code == 405, (method, url)
        assert resp.headers.get("Allow")


def test_posts_without_csrf_are_403(web: WebEnv) -> None:
    admin = web.client("admin")
    hb = web.collections["handbook"]
    bob = user_id(web, "bob")
    cases = [
        ("/admin/collections", {"name": "nocsrf"}),
        (f"/admin/collections/{hb}/rename", {"name": "renamed"}),
        (f"/admin/collections/{hb}/delete", {"confirm": "handbook"}),
        (f"/admin/collections/{hb}/reindex", {}),
        (f"/admin/collections/{hb}/grants", {"principal": f"user:{bob}", "permission": "write"}),
        ("/admin/users", {"username": "eve", "password": "p" * 10, "role": "admin"}),
        (f"/admin/users/{bob}/delete", {}),
        ("/admin/groups", {"name": "g"}),
        ("/admin/tokens", {"name": "t"}),
        ("/admin/settings", {"system_prompt": "hijacked"}),
    ]
    for url, data in cases:
        resp = admin.http.post(url, data=data)  # the raw client: no CSRF header
        assert resp.status_code == 403, url
        assert "CSRF" in resp.get_data(as_text=True)
    # Nothing happened.
    assert "nocsrf" not in {c.name for c in web.svc.library.collections(web.users["admin"])}
    assert web.svc.config.default_system_prompt() is None
    assert "eve" not in {u.username for u in web.svc.accounts.list_users()}


def test_csrf_form_field_is_accepted(web: WebEnv) -> None:
    admin = web.client("admin")
    resp = admin.http.post("/admin/collections", data={"name": "viaform", "csrf_token": admin.csrf})
    assert resp.status_code == 302


# --- overview and collections ---------------------------------------------------------------


def test_overview_counts_documents_by_status(web: WebEnv) -> None:
    page = ok_page(web.client("admin"), "/admin")
    hb = web.collections["handbook"]
    row = re.search(rf'<tr data-collection-id="{hb}">(.*?)</tr>', page, re.S)
    assert row, page
    assert "handbook" in row.group(1)
    indexed = re.search(r'count-indexed">(.*?)</td>', row.group(1), re.S)
    assert indexed and ">4</a>" in indexed.group(1)
    assert f'href="/admin/collections/{hb}?status=indexed"' in row.group(1)
    assert "finance" in page
    for nav in ("collections", "users", "groups", "tokens", "settings", "audit"):
        assert f'id="nav-{nav}"' in page


@pytest.mark.both_databases
def test_create_rename_delete_collection(web: WebEnv) -> None:
    admin = web.client("admin")
    page = post_ok(admin, "/admin/collections", {"name": "Legal docs"})
    assert "Legal docs" in page and "created" in page
    cid = next(
        c.id for c in web.svc.library.collections(web.users["admin"]) if c.name == "Legal docs"
    )
    page = post_ok(admin, f"/admin/collections/{cid}/rename", {"name": "Legal"})
    assert 'id="collection-name" translate="no">Legal<' in page
    # Deleting needs the typed name.
    body = post_err(admin, f"/admin/collections/{cid}/delete", {}, 400)
    assert "type the collection name" in body
    post_err(admin, f"/admin/collections/{cid}/delete", {"confirm": "Legal docs"}, 400)
    page = post_ok(admin, f"/admin/collections/{cid}/delete", {"confirm": "Legal"})
    assert "deleted" in page
    assert admin.get(f"/admin/collections/{cid}").status_code == 404
    audit = [e.action for e in web.svc.audit.list(limit=10)]
    assert {"create_collection", "rename_collection", "delete_collection"} <= set(audit)


def test_collection_name_errors(web: WebEnv) -> None:
    admin = web.client("admin")
    body = post_err(admin, "/admin/collections", {"name": "handbook"}, 409)
    assert "exists already" in body and 'id="error-back"' in body
    post_err(admin, "/admin/collections", {}, 400)
    post_err(admin, "/admin/collections", {"name": "   "}, 400)
    post_err(admin, "/admin/collections", {"name": "../etc"}, 400)
    post_err(admin, "/admin/collections", {"name": "x" * 500}, 400)
    fin = web.collections["finance"]
    post_err(admin, f"/admin/collections/{fin}/rename", {"name": "handbook"}, 409)
    post_err(admin, f"/admin/collections/{fin}/rename", {}, 400)
    assert admin.get("/admin/collections/999999").status_code == 404
    assert admin.get("/admin/collections/abc").status_code == 404


def test_editor_creates_and_fills_own_collection(web: WebEnv) -> None:
    ed = web.client("editor")
    page = post_ok(ed, "/admin/collections", {"name": "editor-notes"})
    assert 'id="upload-input"' in page  # the creator may write it at once
    cid = next(
        c.id for c in web.svc.library.collections(web.users["editor"]) if c.name == "editor-notes"
    )
    assert cid in web.svc.access.writable_collection_ids(web.users["editor"])
    post_ok(ed, f"/admin/collections/{cid}/delete", {"confirm": "editor-notes"}, follow=False)


def test_status_filter_and_table(web: WebEnv) -> None:
    admin = web.client("admin")
    hb = web.collections["handbook"]
    page = ok_page(admin, f"/admin/collections/{hb}?status=indexed")
    assert page.count("<tr data-doc-id=") == 4
    assert page.count('class="badge status indexed"') == 4
    page = ok_page(admin, f"/admin/collections/{hb}?status=failed")
    assert "<tr data-doc-id=" not in page
    assert admin.get(f"/admin/collections/{hb}?status=bogus").status_code == 400


# --- grants -------------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_grant_and_revoke_user_and_group(web: WebEnv) -> None:
    admin = web.client("admin")
    fin = web.collections["finance"]
    bob = web.users["bob"]
    assert fin not in web.svc.access.readable_collection_ids(bob)
    page = post_ok(
        admin,
        f"/admin/collections/{fin}/grants",
        {"principal": f"user:{bob.user_id}", "permission": "read"},
    )
    assert f'data-principal="user:{bob.user_id}"' in page
    assert fin in web.svc.access.readable_collection_ids(bob)
    web.client("bob")  # still signs in; the grant shows in the service as well
    grant = actions(web, "grant")[0]
    assert grant.target == "finance" and grant.details["permission"] == "read"
    assert grant.details["user_id"] == bob.user_id and grant.username == "admin"

    post_ok(admin, f"/admin/collections/{fin}/grants/revoke", {"principal": f"user:{bob.user_id}"})
    assert fin not in web.svc.access.readable_collection_ids(bob)
    revoke = actions(web, "revoke")[0]
    assert revoke.target == "finance" and revoke.details["who"] == "user bob"

    group = web.svc.accounts.create_group("auditors")
    web.svc.accounts.set_members(group.id, [bob.user_id])
    post_ok(
        admin,
        f"/admin/collections/{fin}/grants",
        {"principal": f"group:{group.id}", "permission": "read"},
    )
    assert fin in web.svc.access.readable_collection_ids(bob)
    assert actions(web, "grant")[0].details["who"] == "group auditors"
    post_ok(admin, f"/admin/collections/{fin}/grants/revoke", {"principal": f"group:{group.id}"})
    assert fin not in web.svc.access.readable_collection_ids(bob)


def test_grant_form_errors(web: WebEnv) -> None:
    admin = web.client("admin")
    fin = web.collections["finance"]
    bob = user_id(web, "bob")
    url = f"/admin/collections/{fin}/grants"
    post_err(admin, url, {"permission": "read"}, 400)
    post_err(admin, url, {"principal": "role:1", "permission": "read"}, 400)
    post_err(admin, url, {"principal": "user:abc", "permission": "read"}, 400)
    post_err(admin, url, {"principal": "user:-3", "permission": "read"}, 400)
    post_err(admin, url, {"principal": f"user:{bob}"}, 400)
    post_err(admin, url, {"principal": f"user:{bob}", "permission": "own"}, 400)
    post_err(admin, url, {"principal": "user:99999", "permission": "read"}, 404)
    post_err(admin, url, {"principal": "group:99999", "permission": "read"}, 404)
    post_err(
        admin,
        "/admin/collections/99999/grants",
        {"principal": f"user:{bob}", "permission": "read"},
        404,
    )
    assert actions(web, "grant") == []


# --- users ------------------------------------------------------------------------------------


def test_user_lifecycle(web: WebEnv) -> None:
    admin = web.client("admin")
    page = post_ok(
        admin,
        "/admin/users",
        {
            "username": "carol",
            "display_name": "Carol C.",
            "role": "editor",
            "password": "carol-pass-1",
        },
    )
    assert 'data-username="carol"' in page and "Carol C." in page
    carol = user_id(web, "carol")
    assert actions(web, "user_create")[0].details == {"user_id": carol, "role": "editor"}
    assert web.svc.accounts.authenticate("carol", "carol-pass-1").role == "editor"

    post_ok(admin, f"/admin/users/{carol}/update", {"role": "reader", "display_name": ""})
    user = web.svc.accounts.get_user(carol)
    assert user.role == "reader" and user.display_name is None

    post_ok(admin, f"/admin/users/{carol}/disable", {})
    with pytest.raises(Unauthenticated):
        web.svc.accounts.authenticate("carol", "carol-pass-1")
    post_ok(admin, f"/admin/users/{carol}/enable", {})
    post_ok(admin, f"/admin/users/{carol}/password", {"password": "new-carol-pass"})
    assert web.svc.accounts.authenticate("carol", "new-carol-pass").username == "carol"
    updates = actions(web, "user_update")
    assert updates[0].details == {"user_id": carol, "password": "reset"}
    assert all("new-carol-pass" not in str(e.details) for e in updates)

    post_ok(admin, f"/admin/users/{carol}/delete", {})
    assert "carol" not in {u.username for u in web.svc.accounts.list_users()}
    assert actions(web, "user_delete")[0].target == "carol"


def test_disabling_a_user_ends_their_session(web: WebEnv) -> None:
    bob = web.client("bob")
    ok_page(bob, "/admin/tokens")
    post_ok(web.client("admin"), f"/admin/users/{user_id(web, 'bob')}/disable", {})
    assert bob.get("/admin/tokens").status_code == 302


def test_user_form_errors(web: WebEnv) -> None:
    admin = web.client("admin")
    good = {"username": "dave", "role": "reader", "password": "dave-pass-1"}
    body = post_err(admin, "/admin/users", {**good, "username": "alice"}, 409)
    assert "taken" in body
    post_err(admin, "/admin/users", {**good, "username": "ALICE"}, 409)
    post_err(admin, "/admin/users", {k: v for k, v in good.items() if k != "password"}, 400)
    post_err(admin, "/admin/users", {**good, "password": "short"}, 400)
    post_err(admin, "/admin/users", {**good, "role": "root"}, 400)
    post_err(admin, "/admin/users", {**good, "username": "bad name!"}, 400)
    post_err(admin, "/admin/users", {**good, "password": "x" * 5000}, 400)
    bob = user_id(web, "bob")
    post_err(admin, f"/admin/users/{bob}/update", {}, 400)
    post_err(admin, f"/admin/users/{bob}/update", {"role": "superuser"}, 400)
    post_err(admin, f"/admin/users/{bob}/password", {}, 400)
    post_err(admin, "/admin/users/99999/update", {"role": "reader"}, 404)
    post_err(admin, "/admin/users/99999/delete", {}, 404)
    assert admin.post("/admin/users/abc/delete").status_code == 404
    assert "dave" not in {u.username for u in web.svc.accounts.list_users()}


def test_the_last_admin_stays(web: WebEnv) -> None:
    admin = web.client("admin")
    me = web.users["admin"].user_id
    body = post_err(admin, f"/admin/users/{me}/update", {"role": "reader"}, 400)
    assert "last enabled admin" in body
    assert web.svc.accounts.get_user(me).role == "admin"
    # Your own account is not yours to disable or delete from the console.
    assert "your own account" in post_err(admin, f"/admin/users/{me}/disable", {}, 400)
    assert "your own account" in post_err(admin, f"/admin/users/{me}/delete", {}, 400)
    # With a second admin, the demotion goes through.
    web.svc.accounts.create_user("root2", "root2-password", "admin")
    post_ok(admin, f"/admin/users/{me}/update", {"role": "editor"}, follow=False)
    assert web.svc.accounts.get_user(me).role == "editor"
    assert admin.get("/admin/users").status_code == 403  # the demotion applies at once


# --- groups -----------------------------------------------------------------------------------


def test_group_lifecycle(web: WebEnv) -> None:
    admin = web.client("admin")
    page = post_ok(admin, "/admin/groups", {"name": "Finance team"})
    group = next(g for g, _ in web.svc.accounts.list_groups() if g.name == "Finance team")
    assert f'data-group-id="{group.id}"' in page
    alice, bob = user_id(web, "alice"), user_id(web, "bob")
    post_ok(admin, f"/admin/groups/{group.id}/members", {"user_id": [str(alice), str(bob)]})
    members = next(m for g, m in web.svc.accounts.list_groups() if g.id == group.id)
    assert members == sorted([alice, bob])
    page = post_ok(admin, f"/admin/groups/{group.id}/rename", {"name": "Controllers"})
    assert "Controllers" in page and "alice, bob" in page
    post_ok(admin, f"/admin/groups/{group.id}/members", {})  # nothing checked: empty group
    assert next(m for g, m in web.svc.accounts.list_groups() if g.id == group.id) == []
    post_ok(admin, f"/admin/groups/{group.id}/delete", {})
    assert web.svc.accounts.list_groups() == []
    audit = [(e.action, e.target) for e in web.svc.audit.list(limit=10)]
    assert ("group_create", "Finance team") in audit
    assert ("group_update", "Controllers") in audit
    assert ("group_delete", "Controllers") in audit


def test_group_form_errors(web: WebEnv) -> None:
    admin = web.client("admin")
    group = web.svc.accounts.create_group("ops")
    assert "exists" in post_err(admin, "/admin/groups", {"name": "OPS"}, 409)
    post_err(admin, "/admin/groups", {}, 400)
    post_err(admin, "/admin/groups", {"name": "x" * 300}, 400)
    web.svc.accounts.create_group("dev")
    post_err(admin, f"/admin/groups/{group.id}/rename", {"name": "dev"}, 409)
    post_err(admin, f"/admin/groups/{group.id}/members", {"user_id": "abc"}, 400)
    post_err(admin, f"/admin/groups/{group.id}/members", {"user_id": "99999"}, 404)
    post_err(admin, "/admin/groups/99999/members", {"user_id": "1"}, 404)
    post_err(admin, "/admin/groups/99999/delete", {}, 404)


# --- API tokens ---------------------------------------------------------------------------------


def test_token_shown_once_then_only_its_prefix(web: WebEnv) -> None:
    bob = web.client("bob")  # a reader: tokens are for everyone
    resp = bob.post("/admin/tokens", data={"name": "laptop script"})
    assert resp.status_code == 201
    assert "no-store" in resp.headers["Cache-Control"]
    page = resp.get_data(as_text=True)
    match = re.search(r'<code id="token-plaintext">(dq_[^<]+)</code>', page)
    assert match, page
    plaintext = match.group(1)
    assert "will not be shown again" in page
    assert web.svc.accounts.authenticate_token(plaintext).username == "bob"

    listing = ok_page(bob, "/admin/tokens")
    assert plaintext not in listing
    assert f"{plaintext[:11]}…" in listing and "laptop script" in listing
    assert actions(web, "token_create")[0].target == "laptop script"

    # The API accepts it until it is revoked.
    api = web.app.test_client()
    auth = {"Authorization": f"Bearer {plaintext}"}
    assert api.get("/api/v1/me", headers=auth).status_code == 200
    token_id = web.svc.accounts.list_tokens(web.users["bob"].user_id)[0].id
    post_ok(bob, f"/admin/tokens/{token_id}/revoke", {})
    assert api.get("/api/v1/me", headers=auth).status_code == 401
    with pytest.raises(Unauthenticated):
        web.svc.accounts.authenticate_token(plaintext)
    assert "revoked" in ok_page(bob, "/admin/tokens")
    assert actions(web, "token_revoke")[0].details["token_id"] == token_id


def test_tokens_of_others(web: WebEnv) -> None:
    admin_token = web.token("admin", "admin-cli")
    bob_token = web.token("bob", "bob-cli")
    admin_tid = web.svc.accounts.list_tokens(web.users["admin"].user_id)[0].id
    bob_tid = web.svc.accounts.list_tokens(web.users["bob"].user_id)[0].id
    bob = web.client("bob")
    page = ok_page(bob, "/admin/tokens")
    assert "bob-cli" in page and "admin-cli" not in page and 'id="all-tokens"' not in page
    post_err(bob, f"/admin/tokens/{admin_tid}/revoke", {}, 404)
    web.svc.accounts.authenticate_token(admin_token)  # still valid

    admin = web.client("admin")
    page = ok_page(admin, "/admin/tokens")
    assert 'id="all-tokens"' in page and "bob-cli" in page
    post_ok(admin, f"/admin/tokens/{bob_tid}/revoke", {})
    with pytest.raises(Unauthenticated):
        web.svc.accounts.authenticate_token(bob_token)
    post_err(admin, "/admin/tokens/99999/revoke", {}, 404)


def test_token_form_errors(web: WebEnv) -> None:
    bob = web.client("bob")
    post_err(bob, "/admin/tokens", {}, 400)
    post_err(bob, "/admin/tokens", {"name": "  "}, 400)
    post_err(bob, "/admin/tokens", {"name": "n" * 500}, 400)
    assert web.svc.accounts.list_tokens(web.users["bob"].user_id) == []


# --- settings and audit log ---------------------------------------------------------------------


def test_default_system_prompt(web: WebEnv) -> None:
    admin = web.client("admin")
    page = ok_page(admin, "/admin/settings")
    assert web.svc.answers.default_system_prompt[:40] in page
    page = post_ok(admin, "/admin/settings", {"system_prompt": "Answer like a pirate.\r\nCite."})
    assert "Answer like a pirate." in page
    # the decline rule is added to any prompt, and the admin is told so
    assert 'id="decline-instruction"' in page and DECLINE_SENTENCES["en"] in page
    assert web.svc.config.default_system_prompt() == "Answer like a pirate.\nCite."
    assert actions(web, "settings_change")[0].details == {
        "default_system_prompt": "set",
        "chars": 27,
    }
    post_ok(admin, "/admin/settings", {"system_prompt": ""})
    assert web.svc.config.default_system_prompt() is None
    post_err(admin, "/admin/settings", {}, 400)
    post_err(admin, "/admin/settings", {"system_prompt": "x" * 9000}, 400)
    assert web.svc.config.default_system_prompt() is None


def test_audit_log_filters_and_pages(web: WebEnv) -> None:
    admin = web.client("admin")
    for i in range(55):
        web.svc.audit.record("token_create", actor=web.users["bob"], target=f"t{i}")
    page = ok_page(admin, "/admin/audit")
    first = re.findall(r'<td class="target" translate="no">([^<]*)</td>', page)
    assert first[0] == "t54"  # newest first
    assert len(first) == 50 and 'id="page-older"' in page and 'id="page-newer"' not in page
    page = ok_page(admin, "/admin/audit?page=2")
    assert 'id="page-newer"' in page
    assert "t0" in re.findall(r'<td class="target" translate="no">([^<]*)</td>', page)

    bob = user_id(web, "bob")
    page = ok_page(admin, f"/admin/audit?user={bob}&action=token_create")
    assert set(re.findall(r'data-action="([^"]+)"', page)) == {"token_create"}
    assert 'id="page-older"' in page and f"user={bob}" in page
    page = ok_page(admin, "/admin/audit?action=sign_in")
    actors = re.findall(
        r'data-action="sign_in">\s*<td class="when">.*?</td>\s*<td translate="no">([^<]*)</td>',
        page,
        re.S,
    )
    assert actors and set(actors) == {"admin"}
    page = ok_page(admin, "/admin/audit?action=no_such_action")
    assert "No events match the filter" in page
    for bad in ("page=0", "page=abc", "user=abc", "user=-1", "action=" + "a" * 60):
        assert admin.get(f"/admin/audit?{bad}").status_code == 400, bad


def test_password_is_never_in_the_page_or_log(web: WebEnv) -> None:
    admin = web.client("admin")
    post_ok(
        admin, "/admin/users", {"username": "erin", "role": "reader", "password": "erin-secret-9"}
    )
    assert "erin-secret-9" not in ok_page(admin, "/admin/audit")
    assert "erin-secret-9" not in ok_page(admin, "/admin/users")
    assert PASSWORDS["admin"] not in ok_page(admin, "/admin/audit")
