"""Uploads on the collection page and what follows: statuses, delete, retry, re-index.

Real files (the samples and a broken PDF) go through the real embedded ingest queue;
``wait_ingested`` waits for the background processing the page's script polls for.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from qa.answering.events import Sources
from qa.retrieval.embedder import Embedder
from qa.store.db.models import Document as DocumentRow
from tests.conftest import SAMPLES
from tests.web.conftest import Client, Seeded, WebEnv, build_env

BROKEN_PDF = b"%PDF-1.7\n1 0 obj <<"
UNIQUE = "The quokka-lattice protocol requires three signatures from the harbour master."
JSON = {"Accept": "application/json"}


def new_collection(env: WebEnv, client: Client, name: str = "uploads") -> int:
    resp = client.post("/admin/collections", data={"name": name})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    p = env.users["admin"]
    return next(c.id for c in env.svc.library.collections(p) if c.name == name)


def upload(client: Client, cid: int, name: str, data: bytes, status: int = 202) -> Any:
    resp = client.post(
        f"/admin/collections/{cid}/upload",
        data={"file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        headers=JSON,
    )
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    return resp.get_json()


def documents(client: Client, cid: int, query: str = "") -> list[dict[str, Any]]:
    resp = client.get(f"/admin/collections/{cid}/documents.json{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    docs: list[dict[str, Any]] = resp.get_json()
    return docs


def by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in docs}


def source_names(env: WebEnv, question: str, cid: int) -> set[str]:
    events = env.svc.questions.ask(env.users["admin"], question, collection_ids=[cid])
    first = next(iter(events))
    assert isinstance(first, Sources)
    return {s["document_name"] for s in first.sources}


def test_upload_samples_and_a_broken_file(web: WebEnv) -> None:
    admin = web.client("admin")
    cid = new_collection(web, admin)
    names = sorted(p.name for p in SAMPLES.iterdir())
    for name in names:
        body = upload(admin, cid, name, (SAMPLES / name).read_bytes())
        [entry] = body["uploads"]
        assert entry["name"] == name == entry["source"]
        assert entry["status"] in ("queued", "processing") and entry["created"] is True
        assert entry["document_id"]
    upload(admin, cid, "broken.pdf", BROKEN_PDF)
    web.wait_ingested()

    docs = by_name(documents(admin, cid))
    assert set(docs) == {*names, "broken.pdf"}
    for name in names:
        assert docs[name]["status"] == "indexed", docs[name]
        assert docs[name]["chunks"] > 0
    assert docs["broken.pdf"]["status"] == "failed"
    assert docs["broken.pdf"]["error"]

    # The server-rendered table shows the same, with the reason.
    page = admin.get(f"/admin/collections/{cid}").get_data(as_text=True)
    broken = docs["broken.pdf"]["id"]
    assert f'<tr data-doc-id="{broken}" data-status="failed">' in page
    assert f'<td class="reason" lang="en">{docs["broken.pdf"]["error"]}' in page
    assert page.count('class="badge status indexed"') == len(names)
    assert [d["name"] for d in documents(admin, cid, "?status=failed")] == ["broken.pdf"]
    assert admin.get(f"/admin/collections/{cid}/documents.json?status=nope").status_code == 400

    audit = web.svc.audit.list(action="upload", limit=20)
    assert len(audit) == len(names) + 1 and audit[0].target == "uploads"
    assert audit[0].details["files"][0]["name"] == "broken.pdf"


def test_same_file_twice_is_not_a_second_document(web: WebEnv) -> None:
    admin = web.client("admin")
    hb = web.collections["handbook"]
    data = (SAMPLES / "employee-handbook.md").read_bytes()
    [entry] = upload(admin, hb, "employee-handbook.md", data)["uploads"]
    assert entry["created"] is False and entry["status"] == "indexed"
    assert len(documents(admin, hb)) == 4


def test_zip_upload_expands_into_members(web: WebEnv) -> None:
    admin = web.client("admin")
    cid = new_collection(web, admin)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("policies/remote.md", "# Remote work\n\nWork from anywhere two days a week.\n")
        zf.writestr("policies/notes.txt", "Parking spaces are assigned by the facilities team.\n")
        zf.writestr("policies/broken.pdf", BROKEN_PDF)
    body = upload(admin, cid, "folder.zip", buf.getvalue())
    names = [u["name"] for u in body["uploads"]]
    assert names == [
        "folder.zip/policies/broken.pdf",
        "folder.zip/policies/notes.txt",
        "folder.zip/policies/remote.md",
    ]
    assert {u["source"] for u in body["uploads"]} == {"folder.zip"}
    web.wait_ingested()
    docs = by_name(documents(admin, cid))
    assert docs["folder.zip/policies/remote.md"]["status"] == "indexed"
    assert docs["folder.zip/policies/notes.txt"]["status"] == "indexed"
    assert docs["folder.zip/policies/broken.pdf"]["status"] == "failed"


def test_unreadable_zip_fails_with_a_reason(web: WebEnv) -> None:
    admin = web.client("admin")
    cid = new_collection(web, admin)
    [entry] = upload(admin, cid, "bad.zip", b"PK\x03\x04 this is not really a zip")["uploads"]
    assert entry["name"] == "bad.zip"
    web.wait_ingested()
    [doc] = documents(admin, cid)
    assert doc["status"] == "failed" and doc["error"]


@pytest.mark.both_databases
def test_delete_removes_document_from_listing_and_search(web: WebEnv) -> None:
    admin = web.client("admin")
    cid = new_collection(web, admin)
    [entry] = upload(admin, cid, "quokka.md", f"# Harbour rules\n\n{UNIQUE}\n".encode())["uploads"]
    web.wait_ingested()
    assert "quokka.md" in source_names(web, "What does the quokka-lattice protocol require?", cid)

    resp = admin.post(
        f"/admin/collections/{cid}/documents/delete", data={"doc_id": entry["document_id"]}
    )
    assert resp.status_code == 302
    shown = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'Deleted <span translate="no">quokka.md</span>.' in shown
    assert documents(admin, cid) == []
    web.wait_ingested()
    assert "quokka.md" not in source_names(
        web, "What does the quokka-lattice protocol require?", cid
    )
    event = web.svc.audit.list(action="delete_document", limit=1)[0]
    assert event.details["document_ids"] == [entry["document_id"]]


def test_delete_checks_the_collection_in_the_url(web: WebEnv) -> None:
    admin = web.client("admin")
    hb, fin = web.collections["handbook"], web.collections["finance"]
    finance_doc = documents(admin, fin)[0]["id"]
    url = f"/admin/collections/{hb}/documents/delete"
    assert admin.post(url, data={"doc_id": finance_doc}).status_code == 404
    assert admin.post(url, data={}).status_code == 400
    assert admin.post(url, data={"doc_id": "nope"}).status_code == 404
    assert len(documents(admin, fin)) == 1

    editor = web.client("editor")
    resp = editor.post(f"/admin/collections/{fin}/documents/delete", data={"doc_id": finance_doc})
    assert resp.status_code == 404  # finance does not exist for the editor
    bob = web.client("bob")
    hb_doc = documents(admin, hb)[0]["id"]
    assert bob.post(url, data={"doc_id": hb_doc}).status_code == 403
    assert len(documents(admin, hb)) == 4


def test_retry_failed_and_reindex(web: WebEnv) -> None:
    admin = web.client("admin")
    cid = new_collection(web, admin)
    resp = admin.post(f"/admin/collections/{cid}/retry", data={})
    assert resp.status_code == 302
    assert "No failed documents" in admin.get(resp.headers["Location"]).get_data(as_text=True)

    [bad] = upload(admin, cid, "broken.pdf", BROKEN_PDF)["uploads"]
    upload(admin, cid, "notes.md", b"# Notes\n\nThe canteen opens at eight.\n")
    web.wait_ingested()
    before = by_name(documents(admin, cid))["broken.pdf"]
    assert before["status"] == "failed"
    # A malformed file fails the same way every time: no retry is offered for it.
    assert before["error_code"] == "parse_failed" and before["retryable"] is False
    page = admin.get(f"/admin/collections/{cid}").get_data(as_text=True)
    assert ">Retry<" not in page and "the file could not be read (1)" in page
    assert re.search(r'<button type="submit" disabled[^>]*>Retry failed', page)
    resp = admin.post(f"/admin/collections/{cid}/retry", data={"status": "failed"})
    assert "No failed documents" in admin.get(resp.headers["Location"]).get_data(as_text=True)
    api = admin.post(f"/api/v1/documents/{bad['document_id']}/retry")
    assert api.status_code == 202 and api.get_json()["queued"] == 0

    # A failure a retry may fix (a crashed parser): offered, and queued again.
    with web.svc.db.session() as session:
        row = session.get(DocumentRow, bad["document_id"])
        assert row is not None
        row.error_code = "parser_crashed"
        session.commit()
    assert by_name(documents(admin, cid))["broken.pdf"]["retryable"] is True
    assert ">Retry<" in admin.get(f"/admin/collections/{cid}").get_data(as_text=True)
    resp = admin.post(f"/admin/collections/{cid}/retry", data={"status": "failed"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("?status=failed")
    assert "1 document queued again" in admin.get(resp.headers["Location"]).get_data(as_text=True)
    web.wait_ingested()
    after = by_name(documents(admin, cid))["broken.pdf"]
    assert after["status"] == "failed" and after["attempts"] > before["attempts"]
    assert after["error_code"] == "parse_failed"  # what it really is

    # A re-index of the whole collection.
    resp = admin.post(f"/admin/collections/{cid}/reindex")
    assert resp.status_code == 302
    web.wait_ingested()
    assert by_name(documents(admin, cid))["notes.md"]["status"] == "indexed"
    retried = [e.details["document_ids"] for e in web.svc.audit.list(action="retry", limit=5)]
    assert retried == [[bad["document_id"]], []]  # the API call that queued nothing too
    assert web.svc.audit.list(action="reindex", limit=1)[0].target == str(cid)
    assert (
        admin.post(f"/admin/collections/{cid}/retry", data={"doc_id": "x" * 100}).status_code == 404
    )


def test_upload_request_errors(web: WebEnv) -> None:
    admin = web.client("admin")
    hb, fin = web.collections["handbook"], web.collections["finance"]
    url = f"/admin/collections/{hb}/upload"
    resp = admin.post(url, data={}, content_type="multipart/form-data", headers=JSON)
    assert resp.status_code == 400 and "'file'" in resp.get_json()["error"]["message"]
    resp = admin.post(url, data={"file": (io.BytesIO(b"x"), "")}, headers=JSON)
    assert resp.status_code == 400
    resp = admin.post(url, data="file=x", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400 and resp.is_json  # the script's endpoint answers JSON

    editor = web.client("editor")
    assert upload(editor, hb, "e.md", b"# Editor note\n\nText.\n")["uploads"][0]["created"]
    assert upload(editor, fin, "e.md", b"# x\n", status=404)["error"]["code"] == "not_found"
    assert (
        upload(web.client("alice"), hb, "a.md", b"# x\n", status=403)["error"]["code"]
        == "forbidden"
    )
    assert upload(admin, 99999, "a.md", b"# x\n", status=404)

    raw = admin.http.post(url, data={"file": (io.BytesIO(b"# x\n"), "nocsrf.md")}, headers=JSON)
    assert raw.status_code == 403
    web.wait_ingested()
    assert "nocsrf.md" not in by_name(documents(admin, hb))


def test_plain_form_upload_without_script(web: WebEnv) -> None:
    """The <noscript> fallback: several files in one form post, then a redirect."""
    admin = web.client("admin")
    cid = new_collection(web, admin)
    files = [(io.BytesIO(b"# One\n\nFirst file.\n"), "one.md"), (io.BytesIO(BROKEN_PDF), "two.pdf")]
    resp = admin.post(f"/admin/collections/{cid}/upload", data={"file": files})
    assert resp.status_code == 302
    page = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert "2 files accepted, 0 refused" in page
    web.wait_ingested()
    assert set(by_name(documents(admin, cid))) == {"one.md", "two.pdf"}


def test_collection_page_dom_contract(web: WebEnv) -> None:
    admin = web.client("admin")
    page = admin.get(f"/admin/collections/{web.collections['handbook']}").get_data(as_text=True)
    assert '<input type="file" id="upload-input" name="file" multiple' in page
    assert 'id="drop-zone"' in page and 'id="upload-list"' in page
    assert '<table id="documents"' in page and page.count("<tr data-doc-id=") == 4
    assert page.count('<td class="reason" lang="en">') == 4
    assert 'src="/static/js/admin/collection.js"' in page and 'type="module"' in page
    assert " style=" not in page and "<script>" not in page  # CSP: nothing inline
    script = admin.get("/static/js/admin/collection.js")
    assert script.status_code == 200
    script.close()  # static files are streamed from an open file


@pytest.fixture
def small_cap(seeded: Seeded, embedder: Embedder) -> Iterator[WebEnv]:
    data, db_url = seeded.copy()
    env = build_env(data, embedder, db_url=db_url, max_upload_mb=1)
    try:
        yield env
    finally:
        env.svc.close()


def test_oversized_upload_is_413(small_cap: WebEnv) -> None:
    admin = small_cap.client("admin")
    hb = small_cap.collections["handbook"]
    big = b"# Big\n\n" + b"lorem ipsum " * 100_000  # 1.2 MB
    # Encoded here: the test client would spool a body this size to a temp file that the
    # early 413 leaves unclosed (a ResourceWarning, an error under our pytest settings).
    boundary = "admin-test-boundary"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.md"\r\n'
            f"Content-Type: text/markdown\r\n\r\n"
        ).encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )
    resp = admin.post(
        f"/admin/collections/{hb}/upload",
        data=payload,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=JSON,
    )
    assert resp.status_code == 413
    assert resp.headers["Connection"] == "close"
    body = resp.get_json()
    assert body["error"]["code"] == "too_large"
    assert "limit is 1048576 bytes" in body["error"]["message"]
    # A file under the cap still goes through.
    assert upload(admin, hb, "small.md", b"# Small\n\nFine.\n")["uploads"][0]["created"]
    small_cap.wait_ingested()
    assert "big.md" not in by_name(documents(admin, hb))
