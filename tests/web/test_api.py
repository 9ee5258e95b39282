"""REST API: collections and documents under /api/v1, with tokens and sessions.

Every route is checked for what a client may get wrong (auth, methods, bodies, ids) and
for the access rule that matters most: a collection bob may not read does not exist for
him, whatever route he tries.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from qa.store.db.models import Document as DocumentRow
from tests.web.conftest import WebEnv

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(resp: Any) -> str:
    """The error code of a JSON error body (asserting the documented shape)."""
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    code: str = body["error"]["code"]
    return code


def basename(name: str) -> str:
    # Folder ingests keep the path below the folder ("docs/employee-handbook.md").
    return name.rsplit("/", 1)[-1]


def doc_id_by_name(env: WebEnv, collection: str, name: str) -> str:
    admin = env.users["admin"]
    for doc in env.svc.library.documents(admin, env.collections[collection]):
        if basename(doc.original_name) == name:
            return doc.id
    raise AssertionError(f"no document {name} in {collection}")


def falcon_id(env: WebEnv) -> str:
    return doc_id_by_name(env, "finance", "falcon-budget.md")


def handbook_doc_id(env: WebEnv) -> str:
    return doc_id_by_name(env, "handbook", "employee-handbook.md")


def routes(env: WebEnv) -> list[tuple[str, str]]:
    """(method, url) of every route this module covers, with real ids."""
    hb, doc = env.collections["handbook"], handbook_doc_id(env)
    return [
        ("GET", f"{API}/collections"),
        ("POST", f"{API}/collections"),
        ("GET", f"{API}/collections/{hb}"),
        ("PATCH", f"{API}/collections/{hb}"),
        ("DELETE", f"{API}/collections/{hb}"),
        ("GET", f"{API}/collections/{hb}/documents"),
        ("POST", f"{API}/collections/{hb}/documents"),
        ("POST", f"{API}/collections/{hb}/reindex"),
        ("GET", f"{API}/documents/{doc}"),
        ("DELETE", f"{API}/documents/{doc}"),
        ("POST", f"{API}/documents/{doc}/retry"),
    ]


# -- authentication -------------------------------------------------------------------------


def test_every_route_needs_auth(web: WebEnv) -> None:
    http = web.app.test_client()
    for method, url in routes(web):
        resp = http.open(url, method=method, json={"name": "x"})
        assert resp.status_code == 401, (method, url)
        assert error_code(resp) == "unauthenticated"
    # Nothing was changed by the refused requests.
    assert web.svc.library.collection(web.users["admin"], web.collections["handbook"])


@pytest.mark.parametrize(
    "header",
    ["Bearer dq_not-a-real-token", "Bearer ", "Basic YWxpY2U6cGFzcw==", "dq_no-scheme"],
)
def test_bad_credentials_are_401(web: WebEnv, header: str) -> None:
    http = web.app.test_client()
    for method, url in routes(web):
        resp = http.open(url, method=method, headers={"Authorization": header}, json={})
        assert resp.status_code == 401, (method, url, header)
        assert error_code(resp) == "unauthenticated"


@pytest.mark.both_databases
def test_revoked_token_is_401(web: WebEnv) -> None:
    token = web.token("alice")
    http = web.app.test_client()
    assert http.get(f"{API}/collections", headers=bearer(token)).status_code == 200
    (row,) = web.svc.accounts.list_tokens(web.users["alice"].user_id)
    web.svc.accounts.revoke_token(row.id)
    assert http.get(f"{API}/collections", headers=bearer(token)).status_code == 401


def test_session_needs_csrf_for_changes(web: WebEnv) -> None:
    editor = web.client("editor")
    hb = web.collections["handbook"]
    assert editor.get(f"{API}/collections").status_code == 200
    # The raw client sends the cookie but no CSRF header: refused before the route runs.
    resp = editor.http.post(f"{API}/collections/{hb}/reindex")
    assert resp.status_code == 403
    assert error_code(resp) == "forbidden"
    assert editor.post(f"{API}/collections/{hb}/reindex").status_code == 202


# -- methods and bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/collections"),
        ("DELETE", "/collections"),
        ("POST", "/collections/{hb}"),
        ("PUT", "/collections/{hb}"),
        ("DELETE", "/collections/{hb}/documents"),
        ("GET", "/collections/{hb}/reindex"),
        ("POST", "/documents/{doc}"),
        ("PATCH", "/documents/{doc}"),
        ("GET", "/documents/{doc}/retry"),
        ("POST", "/openapi.json"),
    ],
)
def test_wrong_method_is_405_json(web: WebEnv, method: str, path: str) -> None:
    url = API + path.format(hb=web.collections["handbook"], doc=handbook_doc_id(web))
    resp = web.app.test_client().open(url, method=method, headers=bearer(web.token("admin")))
    assert resp.status_code == 405
    assert error_code(resp) == "method_not_allowed"
    assert resp.headers["Allow"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"handbook"', "application/json"),
        ("null", "application/json"),
        ("name=x", "application/x-www-form-urlencoded"),
        ("", "application/json"),
    ],
)
def test_bad_json_bodies_are_400(web: WebEnv, data: str, content_type: str) -> None:
    http, headers = web.app.test_client(), bearer(web.token("admin"))
    hb = web.collections["handbook"]
    for method, url in [("POST", f"{API}/collections"), ("PATCH", f"{API}/collections/{hb}")]:
        resp = http.open(url, method=method, data=data, content_type=content_type, headers=headers)
        assert resp.status_code == 400, (method, url, data)
        assert error_code(resp) == "invalid_input"


@pytest.mark.parametrize(
    "body", [{}, {"name": 5}, {"name": None}, {"name": ["a"]}, {"name": ""}, {"name": "../x"}]
)
def test_bad_collection_names_are_400(web: WebEnv, body: dict[str, Any]) -> None:
    http, headers = web.app.test_client(), bearer(web.token("admin"))
    resp = http.post(f"{API}/collections", json=body, headers=headers)
    assert resp.status_code == 400
    assert error_code(resp) == "invalid_input"
    resp = http.patch(
        f"{API}/collections/{web.collections['handbook']}", json=body, headers=headers
    )
    assert resp.status_code == 400


def test_huge_json_body_is_413(web: WebEnv) -> None:
    body = json.dumps({"name": "x" * (2 * 1024 * 1024 + 10)})
    resp = web.app.test_client().post(
        f"{API}/collections",
        data=body,
        content_type="application/json",
        headers=bearer(web.token("admin")),
    )
    assert resp.status_code == 413
    assert error_code(resp) == "too_large"


# -- collections ----------------------------------------------------------------------------


def test_lists_only_readable_collections(web: WebEnv) -> None:
    http = web.app.test_client()

    def listed(user: str) -> dict[str, str]:
        resp = http.get(f"{API}/collections", headers=bearer(web.token(user)))
        assert resp.status_code == 200
        return {c["name"]: c["permission"] for c in resp.get_json()["collections"]}

    assert listed("alice") == {"handbook": "read", "finance": "read"}
    assert listed("bob") == {"handbook": "read"}
    assert listed("editor") == {"handbook": "write"}
    assert listed("admin") == {"handbook": "write", "finance": "write"}
    one = http.get(
        f"{API}/collections/{web.collections['handbook']}", headers=bearer(web.token("bob"))
    ).get_json()
    assert one["name"] == "handbook" and one["documents"] == 4 and one["chunks"] > 0


def test_create_rename_delete_collection(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("editor"))
    resp = http.post(f"{API}/collections", json={"name": "legal"}, headers=headers)
    assert resp.status_code == 201
    created = resp.get_json()
    assert created["name"] == "legal" and created["permission"] == "write"
    url = f"{API}/collections/{created['id']}"
    assert resp.headers["Location"].endswith(url)
    assert http.get(url, headers=headers).get_json() == created

    dup = http.post(f"{API}/collections", json={"name": "legal"}, headers=headers)
    assert dup.status_code == 409 and error_code(dup) == "conflict"
    taken = http.patch(url, json={"name": "handbook"}, headers=headers)
    assert taken.status_code == 409

    renamed = http.patch(url, json={"name": "legal-2024"}, headers=headers)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "legal-2024"

    deleted = http.delete(url, headers=headers)
    assert deleted.status_code == 200
    assert deleted.get_json() == {"deleted": True, "id": created["id"], "documents": 0}
    assert http.get(url, headers=headers).status_code == 404
    assert http.delete(url, headers=headers).status_code == 404


def test_readers_cannot_change_collections(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("bob"))
    hb = web.collections["handbook"]
    resp = http.post(f"{API}/collections", json={"name": "mine"}, headers=headers)
    assert resp.status_code == 403 and error_code(resp) == "forbidden"
    assert (
        http.patch(f"{API}/collections/{hb}", json={"name": "h2"}, headers=headers).status_code
        == 403
    )
    assert http.delete(f"{API}/collections/{hb}", headers=headers).status_code == 403
    assert http.post(f"{API}/collections/{hb}/reindex", headers=headers).status_code == 403
    assert http.get(f"{API}/collections/{hb}", headers=headers).get_json()["name"] == "handbook"


def test_unknown_ids_are_404(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("admin"))
    missing = [
        ("GET", f"{API}/collections/999999"),
        ("PATCH", f"{API}/collections/999999"),
        ("DELETE", f"{API}/collections/999999"),
        ("GET", f"{API}/collections/999999/documents"),
        ("POST", f"{API}/collections/999999/reindex"),
        ("GET", f"{API}/documents/{'0' * 64}"),
        ("DELETE", f"{API}/documents/no-such-doc"),
        ("POST", f"{API}/documents/no-such-doc/retry"),
        ("GET", f"{API}/collections/not-a-number"),
        ("GET", f"{API}/no-such-route"),
    ]
    for method, url in missing:
        resp = http.open(url, method=method, json={"name": "renamed"}, headers=headers)
        assert resp.status_code == 404, (method, url)
        assert error_code(resp) == "not_found"
    upload = http.post(
        f"{API}/collections/999999/documents",
        data={"file": (io.BytesIO(b"# hi\n"), "a.md")},
        headers=headers,
    )
    assert upload.status_code == 404


# -- documents ------------------------------------------------------------------------------


def test_documents_list_and_status_filter(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("bob"))
    url = f"{API}/collections/{web.collections['handbook']}/documents"
    docs = http.get(url, headers=headers).get_json()["documents"]
    assert len(docs) == 4 and {d["status"] for d in docs} == {"indexed"}
    names = {basename(d["name"]) for d in docs}
    assert {"travel-and-expenses.pdf", "员工福利指南.md"} <= names
    pdf = next(d for d in docs if basename(d["name"]) == "travel-and-expenses.pdf")
    assert pdf["pages"] == 9 and pdf["error"] is None and pdf["chunks"] > 0
    assert len(http.get(url + "?status=indexed", headers=headers).get_json()["documents"]) == 4
    assert http.get(url + "?status=failed", headers=headers).get_json() == {"documents": []}
    bad = http.get(url + "?status=sideways", headers=headers)
    assert bad.status_code == 400 and error_code(bad) == "invalid_input"

    one = http.get(f"{API}/documents/{pdf['id']}", headers=headers)
    assert one.status_code == 200 and one.get_json() == pdf


@pytest.mark.both_databases
def test_upload_index_and_delete(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("editor"))
    hb = web.collections["handbook"]
    resp = http.post(
        f"{API}/collections/{hb}/documents",
        data={
            "file": [
                (io.BytesIO(b"# Parking\n\nVisitors park on level 3 (orchid-lantern).\n"), "p.md"),
                (io.BytesIO(b"Canteen opens at 11:30 (saffron-kite).\n"), "canteen.txt"),
            ],
            "files": (io.BytesIO(b"Bikes go in the courtyard (umber-falcon).\n"), "bikes.txt"),
        },
        headers=headers,
    )
    assert resp.status_code == 202, resp.get_data(as_text=True)
    uploads = resp.get_json()["uploads"]
    assert [u["name"] for u in uploads] == ["p.md", "canteen.txt", "bikes.txt"]
    assert all(u["created"] and u["document_id"] and u["error"] is None for u in uploads)

    web.wait_ingested()
    for u in uploads:
        doc = http.get(f"{API}/documents/{u['document_id']}", headers=headers).get_json()
        assert doc["status"] == "indexed", doc
        assert doc["collection_id"] == hb

    # The same bytes again create nothing new.
    again = http.post(
        f"{API}/collections/{hb}/documents",
        data={"file": (io.BytesIO(b"Canteen opens at 11:30 (saffron-kite).\n"), "canteen.txt")},
        headers=headers,
    ).get_json()["uploads"]
    assert again[0]["created"] is False

    victim = uploads[0]["document_id"]
    deleted = http.delete(f"{API}/documents/{victim}", headers=headers)
    assert deleted.status_code == 200 and deleted.get_json() == {"deleted": True, "id": victim}
    assert http.get(f"{API}/documents/{victim}", headers=headers).status_code == 404
    listed = http.get(f"{API}/collections/{hb}/documents", headers=headers).get_json()
    assert victim not in {d["id"] for d in listed["documents"]}


def test_upload_needs_a_file_part(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("editor"))
    url = f"{API}/collections/{web.collections['handbook']}/documents"
    cases: list[dict[str, Any]] = [
        {"data": {"other": (io.BytesIO(b"x"), "x.txt")}},
        {"data": {"note": "no files here"}},
        {"data": {"file": (io.BytesIO(b"x"), "")}},
        {"json": {"file": "x"}},
        {"data": b"raw", "content_type": "text/plain"},
    ]
    for kw in cases:
        resp = http.post(url, headers=headers, **kw)
        assert resp.status_code == 400, kw
        assert error_code(resp) == "invalid_input"


def test_failed_document_reason_and_retry(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("editor"))
    hb = web.collections["handbook"]
    resp = http.post(
        f"{API}/collections/{hb}/documents",
        data={"file": (io.BytesIO(b"%PDF-1.7\nthis is not really a pdf\n"), "broken.pdf")},
        headers=headers,
    )
    assert resp.status_code == 202
    doc_id = resp.get_json()["uploads"][0]["document_id"]
    web.wait_ingested()
    doc = http.get(f"{API}/documents/{doc_id}", headers=headers).get_json()
    assert doc["status"] == "failed" and doc["error"], doc
    # The file itself is broken: a retry would fail the same way, so none is made.
    assert doc["error_code"] == "parse_failed" and doc["retryable"] is False
    refused = http.post(f"{API}/documents/{doc_id}/retry", headers=headers)
    assert refused.status_code == 202 and refused.get_json() == {"id": doc_id, "queued": 0}

    # A failure a retry may fix (here: one recorded before failures had a kind).
    with web.svc.db.session() as session:
        row = session.get(DocumentRow, doc_id)
        assert row is not None
        row.error_code = None
        session.commit()
    assert http.get(f"{API}/documents/{doc_id}", headers=headers).get_json()["retryable"]
    retried = http.post(f"{API}/documents/{doc_id}/retry", headers=headers)
    assert retried.status_code == 202 and retried.get_json() == {"id": doc_id, "queued": 1}
    web.wait_ingested()
    assert http.get(f"{API}/documents/{doc_id}", headers=headers).get_json()["status"] == "failed"

    indexed = handbook_doc_id(web)
    noop = http.post(f"{API}/documents/{indexed}/retry", headers=headers)
    assert noop.status_code == 202 and noop.get_json()["queued"] == 0


def test_reindex_is_accepted(web: WebEnv) -> None:
    http = web.app.test_client()
    hb = web.collections["handbook"]
    resp = http.post(f"{API}/collections/{hb}/reindex", headers=bearer(web.token("editor")))
    assert resp.status_code == 202 and resp.get_json() == {"id": hb, "status": "queued"}
    web.wait_ingested()
    docs = web.svc.library.documents(web.users["bob"], hb)
    assert {d.status for d in docs} == {"indexed"}


# -- the access rule: bob and finance -------------------------------------------------------


def test_bob_cannot_see_or_touch_finance(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("bob"))
    fin, secret = web.collections["finance"], falcon_id(web)
    attempts = [
        ("GET", f"{API}/collections/{fin}"),
        ("PATCH", f"{API}/collections/{fin}"),
        ("DELETE", f"{API}/collections/{fin}"),
        ("GET", f"{API}/collections/{fin}/documents"),
        ("POST", f"{API}/collections/{fin}/reindex"),
        ("GET", f"{API}/documents/{secret}"),
        ("DELETE", f"{API}/documents/{secret}"),
        ("POST", f"{API}/documents/{secret}/retry"),
    ]
    for method, url in attempts:
        resp = http.open(url, method=method, json={"name": "stolen"}, headers=headers)
        # 404 exactly like a missing id: not even the existence of finance is revealed.
        assert resp.status_code == 404, (method, url)
        assert error_code(resp) == "not_found"
        assert "finance" not in resp.get_data(as_text=True)
    upload = http.post(
        f"{API}/collections/{fin}/documents",
        data={"file": (io.BytesIO(b"planted"), "planted.txt")},
        headers=headers,
    )
    assert upload.status_code == 404
    names = [
        c["name"] for c in http.get(f"{API}/collections", headers=headers).get_json()["collections"]
    ]
    assert "finance" not in names
    # Still there for alice, unchanged.
    alice = bearer(web.token("alice"))
    docs = http.get(f"{API}/collections/{fin}/documents", headers=alice).get_json()["documents"]
    assert [basename(d["name"]) for d in docs] == ["falcon-budget.md"]


def test_readers_cannot_delete_or_upload_in_readable_collections(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("bob"))
    hb, doc = web.collections["handbook"], handbook_doc_id(web)
    assert http.delete(f"{API}/documents/{doc}", headers=headers).status_code == 403
    assert http.post(f"{API}/documents/{doc}/retry", headers=headers).status_code == 403
    resp = http.post(
        f"{API}/collections/{hb}/documents",
        data={"file": (io.BytesIO(b"planted"), "planted.txt")},
        headers=headers,
    )
    assert resp.status_code == 403 and error_code(resp) == "forbidden"
    assert http.get(f"{API}/documents/{doc}", headers=headers).status_code == 200


@pytest.mark.both_databases
def test_revoked_grant_hides_collection_at_once(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("alice"))
    fin, alice = web.collections["finance"], web.users["alice"].user_id
    assert http.get(f"{API}/collections/{fin}", headers=headers).status_code == 200
    web.svc.access.revoke(fin, user_id=alice)
    assert http.get(f"{API}/collections/{fin}", headers=headers).status_code == 404
    assert http.get(f"{API}/documents/{falcon_id(web)}", headers=headers).status_code == 404
    listed = http.get(f"{API}/collections", headers=headers).get_json()["collections"]
    assert [c["name"] for c in listed] == ["handbook"]


def test_changes_are_audited(web: WebEnv) -> None:
    http, headers = web.app.test_client(), bearer(web.token("admin"))
    created = http.post(f"{API}/collections", json={"name": "audited"}, headers=headers)
    http.delete(f"{API}/collections/{created.get_json()['id']}", headers=headers)
    actions = [e.action for e in web.svc.audit.list(limit=10, offset=0, action=None, user_id=None)]
    assert "create_collection" in actions and "delete_collection" in actions
