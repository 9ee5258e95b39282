"""The portal pages, /api/v1/me and the document content endpoints, over the real app."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qa.retrieval.embedder import Embedder
from qa.store.db.models import Document
from tests.web.conftest import SECRET_PHRASE, Client, Seeded, WebEnv, build_env
from tests.web.test_api_ask import FALCON, SSE, error_of

# Element ids the browser tests and the scripts rely on.
CHAT_PAGE_IDS = (
    "question",
    "ask",
    "stop",
    "collection-picker",
    "new-chat",
    "chat-list",
    "messages",
    "settings-toggle",
    "settings-panel",
    "set-system-prompt",
    "set-temperature",
    "set-top-p",
    "set-max-tokens",
    "set-theme",
    "save-settings",
)


def doc_named(web: WebEnv, suffix: str) -> Document:
    admin = web.users["admin"]
    for collection in web.collections.values():
        for doc in web.svc.library.documents(admin, collection):
            if doc.original_name.endswith(suffix):
                return doc
    raise AssertionError(f"no document named *{suffix}")


def picker_ids(html: str) -> set[int]:
    return {
        int(v) for v in re.findall(r'<input type="checkbox" name="collection" value="(\d+)"', html)
    }


def get_file(client: Client, url: str) -> Any:
    """GET an original; the response is closed (a WSGI server closes the file the same way)."""
    with client.get(url) as resp:
        resp.get_data()
        return resp


def assert_no_inline_code(html: str) -> None:
    """The CSP allows no inline script or style: every script is an external file (the
    language's browser strings ride along as a JSON data block, which never runs)."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        if tag == '<script type="application/json" id="i18n-catalog">':
            continue
        assert 'src="/static/' in tag, tag
    assert " style=" not in html
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


# -- chat page ----------------------------------------------------------------------------


def test_chat_page_needs_sign_in(web: WebEnv) -> None:
    resp = web.app.test_client().get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_chat_page_has_the_dom_contract(web: WebEnv) -> None:
    resp = web.client("alice").get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    for element_id in CHAT_PAGE_IDS:
        assert f'id="{element_id}"' in html, element_id
    assert re.search(r'<textarea id="question"', html)
    assert re.search(r'<button type="button" id="stop"[^>]*\bhidden\b', html)
    assert re.search(r'<form id="settings-panel"[^>]*\bhidden\b', html)
    assert '<option value="dark" selected>' in html
    assert 'src="/static/js/portal/chat.js"' in html and 'type="module"' in html
    assert 'data-theme="dark"' in html
    assert_no_inline_code(html)


def test_picker_lists_only_readable_collections(web: WebEnv) -> None:
    finance, handbook = web.collections["finance"], web.collections["handbook"]
    alice = web.client("alice").get("/").get_data(as_text=True)
    assert picker_ids(alice) == {finance, handbook}
    assert ">finance<" in alice
    bob = web.client("bob").get("/").get_data(as_text=True)
    assert picker_ids(bob) == {handbook}
    assert "finance" not in bob


def test_user_without_grants_sees_a_hint(web: WebEnv) -> None:
    web.svc.accounts.create_user("carol", "carol-password-1", "reader")
    carol = web.app.test_client()
    page = carol.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert csrf
    carol.post(
        "/login",
        data={"username": "carol", "password": "carol-password-1", "csrf_token": csrf.group(1)},
    )
    html = carol.get("/").get_data(as_text=True)
    assert picker_ids(html) == set() and 'id="no-collections"' in html


def test_saved_theme_is_rendered(web: WebEnv) -> None:
    alice = web.client("alice")
    alice.put("/api/v1/me/preferences", json={"theme": "light"})
    html = alice.get("/").get_data(as_text=True)
    assert 'data-theme="light"' in html
    assert '<option value="light" selected>' in html


# -- /api/v1/me ---------------------------------------------------------------------------


def test_me_describes_the_user(web: WebEnv) -> None:
    data = web.client("alice").get("/api/v1/me").get_json()
    assert data["user"] == {
        "id": web.users["alice"].user_id,
        "username": "alice",
        "display_name": None,
        "role": "reader",
    }
    assert data["role"] == "reader"
    assert data["preferences"] == {}
    assert data["answer_mode"] == "extractive"
    assert data["defaults"]["temperature"] == 0.7 and data["defaults"]["theme"] == "dark"
    assert data["defaults"]["system_prompt"]
    assert {c["name"]: c["permission"] for c in data["collections"]} == {
        "finance": "read",
        "handbook": "read",
    }


def test_me_lists_only_readable_collections(web: WebEnv) -> None:
    data = web.client("bob").get("/api/v1/me").get_json()
    assert [c["name"] for c in data["collections"]] == ["handbook"]
    editor = web.client("editor").get("/api/v1/me").get_json()
    assert {c["name"]: c["permission"] for c in editor["collections"]} == {"handbook": "write"}


def test_me_shows_the_admin_default_prompt(web: WebEnv) -> None:
    web.svc.config.set_default_system_prompt("House style: short answers.")
    data = web.client("bob").get("/api/v1/me").get_json()
    assert data["defaults"]["system_prompt"] == "House style: short answers."


def test_me_works_with_an_api_token(web: WebEnv) -> None:
    http = web.app.test_client()
    resp = http.get("/api/v1/me", headers={"Authorization": f"Bearer {web.token('bob')}"})
    assert resp.get_json()["user"]["username"] == "bob"
    assert error_of(http.get("/api/v1/me"), 401) == "unauthenticated"


def test_preferences_round_trip(web: WebEnv) -> None:
    alice = web.client("alice")
    prefs = {
        "system_prompt": "Answer in one sentence.",
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 256,
        "theme": "light",
    }
    resp = alice.put("/api/v1/me/preferences", json=prefs)
    assert resp.status_code == 200 and resp.get_json() == {"preferences": prefs}
    assert alice.get("/api/v1/me").get_json()["preferences"] == prefs
    # Partial updates merge; null (or a blank prompt) resets a key to its default.
    resp = alice.put(
        "/api/v1/me/preferences", json={"temperature": None, "system_prompt": " ", "top_p": 1}
    )
    expected = {"top_p": 1.0, "max_tokens": 256, "theme": "light"}
    assert resp.get_json()["preferences"] == expected
    assert alice.get("/api/v1/me").get_json()["preferences"] == expected
    assert web.client("bob").get("/api/v1/me").get_json()["preferences"] == {}


def test_preference_changes_are_audited(web: WebEnv) -> None:
    web.client("alice").put("/api/v1/me/preferences", json={"theme": "light", "top_p": 0.5})
    events = web.svc.audit.list(limit=5, action="settings_change")
    assert len(events) == 1
    assert events[0].username == "alice"
    assert events[0].details == {"preferences": ["theme", "top_p"]}


@pytest.mark.parametrize(
    "body",
    [
        {"temperature": 3},
        {"temperature": "hot"},
        {"temperature": True},
        {"top_p": 0},
        {"top_p": 1.5},
        {"max_tokens": 0},
        {"max_tokens": 2.5},
        {"theme": "blue"},
        {"system_prompt": "p" * 8001},
        {"colour": "red"},
        {"theme": "light", "temperature": 9},
    ],
)
def test_bad_preferences_are_400_and_change_nothing(web: WebEnv, body: dict[str, Any]) -> None:
    alice = web.client("alice")
    resp = alice.put("/api/v1/me/preferences", json=body)
    assert error_of(resp, 400) == "invalid_input"
    assert alice.get("/api/v1/me").get_json()["preferences"] == {}
    assert web.svc.audit.list(limit=5, action="settings_change") == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("theme=light", "application/x-www-form-urlencoded"),
        ("[]", "application/json"),
        ("{", "application/json"),
    ],
)
def test_non_json_preferences_are_400(web: WebEnv, data: str, content_type: str) -> None:
    resp = web.client("alice").put("/api/v1/me/preferences", data=data, content_type=content_type)
    assert error_of(resp, 400) == "invalid_input"


def test_me_wrong_methods_are_405(web: WebEnv) -> None:
    alice = web.client("alice")
    for method, url in (
        ("post", "/api/v1/me"),
        ("delete", "/api/v1/me"),
        ("get", "/api/v1/me/preferences"),
        ("post", "/api/v1/me/preferences"),
    ):
        assert error_of(getattr(alice, method)(url), 405) == "method_not_allowed"


def test_preferences_need_csrf(web: WebEnv) -> None:
    alice = web.client("alice")
    resp = alice.http.put("/api/v1/me/preferences", json={"theme": "light"})
    assert error_of(resp, 403) == "forbidden"


# -- document pages and originals ----------------------------------------------------------


def test_pages_of_a_pdf(web: WebEnv) -> None:
    doc = doc_named(web, "travel-and-expenses.pdf")
    resp = web.client("bob").get(f"/api/v1/documents/{doc.id}/pages")
    assert resp.status_code == 200
    data = resp.get_json()
    assert data["document"]["id"] == doc.id and data["document"]["type"] == "pdf"
    assert [p["number"] for p in data["pages"]] == list(range(1, 10))
    assert "EUR 220" in data["pages"][3]["text"]


def test_highlight_offsets_point_into_the_page_text(web: WebEnv) -> None:
    """What the viewer does: the highlight of a citation is text[start:end] of its page."""
    alice = web.client("alice")
    answer = alice.post("/api/v1/ask", json={"question": "What is the hotel limit in London?"})
    highlight = next(h for h in answer.get_json()["highlights"] if h["page"] == 4)
    pages = alice.get(f"/api/v1/documents/{highlight['document_id']}/pages").get_json()["pages"]
    text = pages[3]["text"][highlight["char_start"] : highlight["char_end"]]
    assert "EUR 220 in London" in " ".join(text.split())


def test_pages_of_an_unreadable_document_are_404(web: WebEnv) -> None:
    secret = doc_named(web, "falcon-budget.md")
    bob = web.client("bob")
    for url in (
        f"/api/v1/documents/{secret.id}/pages",
        f"/api/v1/documents/{secret.id}/file",
        "/api/v1/documents/nope/pages",
        "/api/v1/documents/nope/file",
    ):
        resp = get_file(bob, url)
        assert error_of(resp, 404) == "not_found"
        assert SECRET_PHRASE not in resp.get_data(as_text=True)
    alice = web.client("alice").get(f"/api/v1/documents/{secret.id}/pages")
    assert SECRET_PHRASE in alice.get_data(as_text=True)


def test_pdf_original_is_served_inline(web: WebEnv) -> None:
    doc = doc_named(web, "travel-and-expenses.pdf")
    resp = get_file(web.client("bob"), f"/api/v1/documents/{doc.id}/file")
    assert resp.status_code == 200
    assert resp.mimetype == "application/pdf"
    assert resp.headers["Content-Disposition"] == "inline; filename=travel-and-expenses.pdf"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_data()[:5] == b"%PDF-"
    assert int(resp.headers["Content-Length"]) == doc.size_bytes


def test_pdf_original_is_served_from_a_relative_data_dir(
    seeded: Seeded, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make demo`` runs with ``--data-dir var``: Flask's send_file reads a relative path
    against the app's package folder, so settings make every data path absolute at start."""
    data, db_url = seeded.copy()
    monkeypatch.chdir(data.parent)
    env = build_env(Path(data.name), embedder, db_url=db_url)
    try:
        assert env.settings.data_dir == data
        doc = doc_named(env, "travel-and-expenses.pdf")
        resp = get_file(env.client("bob"), f"/api/v1/documents/{doc.id}/file")
        assert resp.status_code == 200 and resp.get_data()[:5] == b"%PDF-"
    finally:
        env.queue.wait_idle(60)
        env.svc.close()


def test_other_originals_are_sandboxed_attachments(web: WebEnv) -> None:
    doc = doc_named(web, "employee-handbook.md")
    resp = get_file(web.client("bob"), f"/api/v1/documents/{doc.id}/file")
    assert resp.status_code == 200
    assert resp.mimetype == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == "attachment; filename=employee-handbook.md"
    assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert b"Employee Handbook" in resp.get_data()


def test_non_ascii_names_use_rfc_6266(web: WebEnv) -> None:
    doc = doc_named(web, "员工福利指南.md")
    resp = get_file(web.client("bob"), f"/api/v1/documents/{doc.id}/file")
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''%E5%91%98%E5%B7%A5%E7%A6%8F%E5%88%A9%E6%8C%87%E5%8D%97.md" in (
        disposition
    )
    assert resp.headers["Content-Security-Policy"] == "sandbox"


def test_uploaded_html_is_never_served_as_html(web: WebEnv) -> None:
    editor = web.client("editor")
    handbook = web.collections["handbook"]
    page = (
        b"<html><body><script>alert(document.cookie)</script><p>Travel FAQ page</p></body></html>"
    )
    uploaded = web.svc.library.upload(web.users["editor"], handbook, io.BytesIO(page), "faq.html")
    web.wait_ingested()
    doc_id = uploaded[0].document_id
    resp = get_file(editor, f"/api/v1/documents/{doc_id}/file")
    assert resp.status_code == 200
    assert resp.mimetype == "application/octet-stream"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["Content-Security-Policy"] == "sandbox"


def test_document_endpoints_wrong_methods_are_405(web: WebEnv) -> None:
    doc = doc_named(web, "employee-handbook.md")
    alice = web.client("alice")
    for method in ("post", "put", "delete"):
        for part in ("pages", "file"):
            resp = getattr(alice, method)(f"/api/v1/documents/{doc.id}/{part}")
            assert error_of(resp, 405) == "method_not_allowed"


# -- viewer page --------------------------------------------------------------------------


def test_viewer_for_a_readable_document(web: WebEnv) -> None:
    secret = doc_named(web, "falcon-budget.md")
    resp = web.client("alice").get(f"/documents/{secret.id}/view?page=1&start=2&end=30")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'id="viewer"' in html
    assert f'data-doc-type="{secret.detected_type}"' in html
    assert 'data-page="1"' in html and 'data-start="2"' in html and 'data-end="30"' in html
    assert 'src="/static/js/portal/viewer.js"' in html
    assert_no_inline_code(html)


def test_viewer_of_a_pdf_loads_the_text_layer_css(web: WebEnv) -> None:
    doc = doc_named(web, "travel-and-expenses.pdf")
    html = web.client("bob").get(f"/documents/{doc.id}/view?page=4").get_data(as_text=True)
    assert 'data-doc-type="pdf"' in html and 'data-page="4"' in html
    assert 'data-start=""' in html
    assert "vendor/pdfjs/text_layer.css" in html


def test_viewer_hides_unreadable_documents(web: WebEnv) -> None:
    secret = doc_named(web, "falcon-budget.md")
    bob = web.client("bob")
    resp = bob.get(f"/documents/{secret.id}/view?page=1")
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    assert SECRET_PHRASE not in resp.get_data(as_text=True)
    assert "falcon" not in resp.get_data(as_text=True).lower()
    assert bob.get("/documents/unknown/view").status_code == 404


def test_viewer_needs_sign_in_and_valid_offsets(web: WebEnv) -> None:
    doc = doc_named(web, "employee-handbook.md")
    resp = web.app.test_client().get(f"/documents/{doc.id}/view")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    alice = web.client("alice")
    for query in ("page=abc", "page=0", "start=-1", "end=x"):
        assert alice.get(f"/documents/{doc.id}/view?{query}").status_code == 400


# -- the secret ---------------------------------------------------------------------------


def test_bob_never_receives_the_secret_anywhere(web: WebEnv) -> None:
    bob: Client = web.client("bob")
    # Bob knows the project's other details, not its name: his own words come back to him.
    question = "What is the budget of the zebra-quartz migration?"
    bodies = [
        bob.get("/").get_data(as_text=True),
        bob.get("/api/v1/me").get_data(as_text=True),
        bob.post("/api/v1/ask", json={"question": question}, headers=SSE).get_data(as_text=True),
        bob.post("/api/v1/ask", json={"question": question}).get_data(as_text=True),
        bob.post("/api/v1/ask", json={"question": FALCON}).get_data(as_text=True),
    ]
    chat = bob.post("/api/v1/chats", json={}).get_json()["chat"]["id"]
    bob.post("/api/v1/ask", json={"question": question, "chat_id": chat})
    bodies.append(bob.get(f"/api/v1/chats/{chat}").get_data(as_text=True))
    bodies.append(bob.get("/api/v1/chats").get_data(as_text=True))
    handbook = web.collections["handbook"]
    for doc in web.svc.library.documents(web.users["bob"], handbook):
        bodies.append(bob.get(f"/api/v1/documents/{doc.id}/pages").get_data(as_text=True))
        original = get_file(bob, f"/api/v1/documents/{doc.id}/file")
        bodies.append(original.get_data().decode("latin-1"))
    for body in bodies:
        assert SECRET_PHRASE not in body


# -- the portal's pure JS helpers, run in Node when it is installed -----------------------

JS_DIR = Path(__file__).resolve().parents[2] / "web" / "static" / "js" / "portal"
JS_CHECKS = """
import assert from "node:assert/strict";
import { readEvents } from "./sse.js";
import { passageRanges } from "./passage.js";
import { citationTargets, sourceTarget, viewerUrl } from "./citations.js";

// SSE: an event split across chunks, CRLF line ends, a comment, a multibyte character
// split across chunks, and a last event without the closing blank line.
const bytes = new TextEncoder().encode(
  'event: sour' + 'ces\\ndata: {"type":"sources","sources":[]}\\n\\n' +
  'event: token\\r\\ndata: {"type":"token","text":"a\\\\nb"}\\r\\n\\r\\n: keep-alive\\n\\n' +
  'event: token\\ndata: {"type":"token","text":"\\u00e9\\u4e2d"}',
);
const stream = new ReadableStream({
  start(controller) {
    for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
    controller.close();
  },
});
const events = [];
for await (const event of readEvents(stream)) events.push(event);
assert.deepEqual(events, [
  { type: "sources", sources: [] },
  { type: "token", text: "a\\nb" },
  { type: "token", text: "\\u00e9\\u4e2d" },
]);

// Passage matching ignores whitespace and ligatures, and marks only the covered parts.
assert.deepEqual(
  passageRanges(
    ["Hotels", "The nightly \\ufb01le limit is", " EUR 220.", "Next"],
    "nightly file limit is EUR\\n 220",
  ),
  [{ index: 1, start: 4, end: 24 }, { index: 2, start: 1, end: 8 }],
);
assert.deepEqual(passageRanges(["abc"], "   "), []);

// Citation targets: a highlight carried over a page break is one target; sources fill in.
const targets = citationTargets({
  sources: [{ n: 2, document_id: "e", page_start: 1, page_end: 2, char_start: 5, char_end: 9 }],
  citations: [],
  highlights: [
    { n: 1, document_id: "d", page: 2, char_start: 10, char_end: 99 },
    { n: 1, document_id: "d", page: 3, char_start: 0, char_end: 20 },
    { n: 1, document_id: "d", page: 3, char_start: 30, char_end: 40 },
  ],
});
assert.deepEqual(targets.get(1).map(viewerUrl), [
  "/documents/d/view?page=2&start=10&end=99",
  "/documents/d/view?page=3&start=30&end=40",
]);
// char_end belongs to page_end: a chunk running onto page 2 has no end on page 1.
assert.equal(viewerUrl(targets.get(2)[0]), "/documents/e/view?page=1&start=5");
assert.equal(
  viewerUrl(sourceTarget({
    document_id: "a/b", page_start: 4, page_end: 4, char_start: 0, char_end: 7,
  })),
  "/documents/a%2Fb/view?page=4&start=0&end=7",
);
console.log("ok");
"""


def test_portal_js_helpers(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    # A copy of the modules, so the check script sits next to them (relative imports).
    portal = tmp_path / "portal"
    portal.mkdir()
    for name in ("sse.js", "passage.js", "citations.js"):
        shutil.copy(JS_DIR / name, portal / name)
    shutil.copy(JS_DIR.parent / "i18n.js", tmp_path / "i18n.js")
    (tmp_path / "package.json").write_text('{"type": "module"}')  # ES modules on any Node
    (portal / "check.mjs").write_text(JS_CHECKS)
    result = subprocess.run(
        [node, "check.mjs"], cwd=portal, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
