"""The UI in English and Simplified Chinese (web/i18n.py): the language is chosen from the
user's setting, then Accept-Language; every string of the pages has a translation; a page
rendered in Chinese has no English left but names, data and the product's own terms."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from bs4 import BeautifulSoup

from tests.conftest import REPO
from tests.web.conftest import WebEnv, csrf_from

TRANSLATIONS = REPO / "web" / "translations"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
EN = {"Accept-Language": "en-US,en;q=0.9"}
#: English that stays English in a Chinese page: the product, protocols, key names
KEEP = {"docqa", "API", "PDF", "JSON", "Markdown", "Top", "Enter", "Shift", "OpenAI", "CSV"}
KEEP |= {"UTC", "DN", "zip", "REST", "MB", "kB", "GB", "TB", "Ctrl", "OCR", "NFS", "SMB"}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extract(tmp_path: Path, domain: str) -> Any:
    """The strings the sources use now, extracted the way `make translations-update` does."""
    out = tmp_path / f"{domain}.pot"
    if domain == "messages":
        args = ["-F", "babel.cfg", "-k", "lazy_gettext"]
    else:
        args = ["-F", "babel-js.cfg", "-k", "_", "-k", "ngettext:1,2"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "--quiet",
            "extract",
            *args,
            "-o",
            str(out),
            ".",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    with out.open("rb") as fh:
        return read_po(fh)


def _catalog(domain: str) -> Any:
    with (TRANSLATIONS / "zh" / "LC_MESSAGES" / f"{domain}.po").open("rb") as fh:
        return read_po(fh, locale="zh")


@pytest.mark.parametrize("domain", ["messages", "js"])
def test_every_string_has_a_chinese_translation(tmp_path: Path, domain: str) -> None:
    used = _extract(tmp_path, domain)
    zh = _catalog(domain)
    problems = []
    for msg in used:
        if not msg.id:
            continue
        have = zh.get(msg.id)
        if have is None:
            problems.append(f"not in zh/{domain}.po: {msg.id!r}")
            continue
        strings = have.string if isinstance(have.string, tuple) else (have.string,)
        if not all(strings) or have.fuzzy:
            problems.append(f"untranslated or fuzzy: {msg.id!r}")
            continue
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        wanted = set(_PLACEHOLDER.findall(ids[-1]))
        if any(set(_PLACEHOLDER.findall(s)) != wanted for s in strings):
            problems.append(f"placeholders differ: {msg.id!r} -> {strings!r}")
    assert not problems, "make translations-update, then translate:\n" + "\n".join(problems)


#: every _("...") and ngettext("...", of the browser modules, found by a plain regex
_JS_CALL = re.compile(r'\b(?:_|ngettext)\(\s*"((?:[^"\\]|\\.)*)"')


def test_the_extractor_sees_every_browser_string(tmp_path: Path) -> None:
    """pybabel's JavaScript lexer skips calls inside template literals and nested calls;
    a string it misses would silently stay English."""
    extracted = set()
    for msg in _extract(tmp_path, "js"):
        extracted.update(msg.id if isinstance(msg.id, tuple) else (msg.id,))
    called = {
        m.group(1)
        for path in (REPO / "web" / "static" / "js").rglob("*.js")
        if "vendor" not in path.parts
        for m in _JS_CALL.finditer(path.read_text(encoding="utf-8"))
    }
    assert called - extracted == set()


@pytest.mark.parametrize("domain", ["messages", "js"])
def test_the_compiled_catalogs_are_those_of_the_po_files(domain: str) -> None:
    mo = TRANSLATIONS / "zh" / "LC_MESSAGES" / f"{domain}.mo"
    assert mo.is_file(), "make translations compiles the catalogs"

    def as_dict(messages: Any) -> dict[Any, Any]:
        def key(value: Any) -> Any:
            return tuple(value) if isinstance(value, list | tuple) else value

        return {key(m.id): key(m.string) for m in messages if m.id}

    with mo.open("rb") as fh:
        compiled = as_dict(read_mo(fh))
    written = as_dict(_catalog(domain))
    assert compiled == written, "the .mo is stale: make translations"


def english_left(html: str) -> list[str]:
    """Text a reader sees (and titles, placeholders, labels) with English words in it,
    leaving out code, data marked translate="no" and parts marked as another language."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "code", "pre", "time"]):
        tag.decompose()
    for tag in soup.select('[translate="no"]'):
        tag.decompose()
    for tag in soup.select("[lang]"):
        if tag.name != "html" and not str(tag.get("lang", "")).startswith("zh"):
            tag.decompose()
    texts = list(soup.stripped_strings)
    for tag in soup.find_all(True):
        for attr in ("title", "placeholder", "aria-label", "alt"):
            if tag.get(attr):
                texts.append(str(tag[attr]))
        if tag.name == "input" and tag.get("type") in ("submit", "button"):
            texts.append(str(tag.get("value") or ""))
    return [t for t in texts if any(w not in KEEP for w in re.findall(r"[A-Za-z]{2,}", t))]


def portal_pages(web: WebEnv) -> dict[str, str]:
    doc_id = web.svc.library.documents(web.users["alice"], web.collections["handbook"])[0].id
    return {
        "chat": "/",
        "summaries": "/summaries",
        "viewer": f"/documents/{doc_id}/view?page=1&start=0&end=20",
        "not found": "/documents/nope/view",
    }


def admin_pages(web: WebEnv) -> dict[str, str]:
    handbook = web.collections["handbook"]
    return {
        "overview": "/admin",
        "collections": "/admin/collections",
        "collection": f"/admin/collections/{handbook}",
        "failed documents": f"/admin/collections/{handbook}?status=failed",
        "users": "/admin/users",
        "groups": "/admin/groups",
        "tokens": "/admin/tokens",
        "settings": "/admin/settings",
        "audit": "/admin/audit",
        "console error": "/admin/collections/999999",
    }


def test_pages_render_in_chinese_with_no_english_left(web: WebEnv) -> None:
    alice, admin = web.client("alice"), web.client("admin")
    # a few things to show: a group, a token, an audit trail, a flash message
    assert admin.post("/admin/groups", data={"name": "finance-team"}, headers=ZH).status_code == 302
    web.token("admin", "nightly")
    created = admin.post("/admin/collections", data={"name": "Contracts 2026"}, headers=ZH)
    assert created.status_code == 302
    pages = {"sign-in": ("anonymous", "/login")}
    pages |= {name: ("alice", url) for name, url in portal_pages(web).items()}
    pages |= {name: ("admin", url) for name, url in admin_pages(web).items()}
    pages["after a flash"] = ("admin", created.headers["Location"])
    leftovers: dict[str, list[str]] = {}
    for name, (who, url) in pages.items():
        http = {"anonymous": web.app.test_client(), "alice": alice.http, "admin": admin.http}[who]
        resp = http.get(url, headers=ZH)
        assert resp.status_code in (200, 404), (name, resp.status_code)
        html = resp.get_data(as_text=True)
        assert '<html lang="zh-Hans"' in html, name
        left = english_left(html)
        if left:
            leftovers[name] = left
    assert not leftovers, leftovers


def test_the_language_follows_the_setting_then_the_browser(web: WebEnv) -> None:
    bob = web.client("bob")

    def heading(headers: dict[str, str]) -> str:
        html = bob.http.get("/", headers=headers).get_data(as_text=True)
        return re.search(r'<html lang="([^"]+)"', html).group(1)  # type: ignore[union-attr]

    assert heading(ZH) == "zh-Hans" and heading(EN) == "en"
    assert heading({"Accept-Language": "zh-TW"}) == "zh-Hans"  # Chinese, in Simplified
    assert heading({"Accept-Language": "fr-FR"}) == "en"  # neither: English
    assert heading({}) == "en"
    assert bob.put("/api/v1/me/preferences", json={"language": "zh"}).status_code == 200
    assert heading(EN) == "zh-Hans"  # the setting wins over the browser
    me = bob.get("/api/v1/me").get_json()
    assert me["preferences"]["language"] == "zh"
    assert bob.put("/api/v1/me/preferences", json={"language": None}).status_code == 200
    assert heading(EN) == "en"
    bad = bob.put("/api/v1/me/preferences", json={"language": "klingon"})
    assert bad.status_code == 400 and "language" in bad.get_json()["error"]["message"]


def test_the_page_carries_its_browser_strings(web: WebEnv) -> None:
    alice = web.client("alice")
    zh = BeautifulSoup(alice.http.get("/", headers=ZH).get_data(as_text=True), "html.parser")
    node = zh.find("script", id="i18n-catalog")
    assert node is not None and node.get("type") == "application/json"
    import json

    catalog = json.loads(node.string or "{}")
    assert catalog["Searching your documents…"] == "正在检索你的文档…"
    assert catalog["Found %(n)s source"] == ["找到 %(n)s 个来源"]  # plural forms as a list
    en = BeautifulSoup(alice.http.get("/", headers=EN).get_data(as_text=True), "html.parser")
    assert json.loads(en.find("script", id="i18n-catalog").string) == {}  # type: ignore[union-attr]


def test_a_failed_sign_in_is_told_in_chinese(web: WebEnv) -> None:
    http = web.app.test_client()
    csrf = csrf_from(http.get("/login", headers=ZH).get_data(as_text=True))
    form = {"username": "alice", "password": "not her password", "csrf_token": csrf}
    resp = http.post("/login", data=form, headers=ZH)
    assert resp.status_code == 401
    html = resp.get_data(as_text=True)
    assert "用户名或密码错误。" in html
    assert english_left(html) == []


def test_server_errors_are_told_in_the_readers_language(web: WebEnv) -> None:
    """Messages raised below the web layer (qa, ingest) reach a Chinese reader in Chinese,
    through JSON errors, the console's error page and the answer stream; English readers
    get the same English as before, and the error code never changes."""
    alice = web.client("alice")
    cases = [
        (
            lambda h: alice.post("/api/v1/ask", json={"question": "  "}, headers=h),
            400,
            "the question is empty",
            "问题为空",
        ),
        (
            lambda h: alice.post(
                "/api/v1/ask", json={"question": "hotel?", "collection_ids": [999999]}, headers=h
            ),
            404,
            "no collection with id 999999",
            "没有 ID 为 999999 的文档集",
        ),
        (
            lambda h: alice.get("/api/v1/chats/nope", headers=h),
            404,
            "no chat 'nope'",
            "没有对话 'nope'",
        ),
        (
            lambda h: alice.put("/api/v1/me/preferences", json={"theme": "neon"}, headers=h),
            400,
            "theme must be one of dark, light",
            "主题须为以下之一：dark, light",
        ),
    ]
    for call, status, english, chinese in cases:
        for headers, expected in ((EN, english), (ZH, chinese)):
            resp = call(headers)
            assert resp.status_code == status, (expected, resp.get_json())
            assert resp.get_json()["error"]["message"] == expected
    # The user's own setting decides over the browser's, for API errors too.
    assert alice.put("/api/v1/me/preferences", json={"language": "zh"}).status_code == 200
    resp = alice.post("/api/v1/ask", json={"question": "  "}, headers=EN)
    assert resp.get_json()["error"] == {"code": "invalid_input", "message": "问题为空"}
    assert alice.put("/api/v1/me/preferences", json={"language": None}).status_code == 200

    admin = web.client("admin")
    page = admin.get("/admin/collections/999999", headers=ZH)
    assert page.status_code == 404
    html = page.get_data(as_text=True)
    assert "没有 ID 为 999999 的文档集" in html and english_left(html) == []


def test_a_failure_reason_is_shown_in_the_readers_language(web: WebEnv) -> None:
    """A document's failure reason is stored in English with its template (migration
    0013): the console and the documents API say it in the reader's language."""
    editor = web.client("editor")
    handbook = web.collections["handbook"]
    upload = editor.post(
        f"/api/v1/collections/{handbook}/documents",
        data={"file": (io.BytesIO(b""), "blank.txt")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 202, upload.get_json()
    doc_id = upload.get_json()["uploads"][0]["document_id"]
    web.wait_ingested()
    reasons = {}
    for headers in (EN, ZH):
        docs = editor.get(f"/api/v1/collections/{handbook}/documents", headers=headers)
        doc = next(d for d in docs.get_json()["documents"] if d["id"] == doc_id)
        assert doc["status"] == "failed" and doc["error_code"] == "no_text"
        reasons[headers["Accept-Language"][:2]] = doc["error"]
    assert reasons == {"en": "empty file", "zh": "空文件"}
    html = editor.get(f"/admin/collections/{handbook}?status=failed", headers=ZH).get_data(
        as_text=True
    )
    assert "空文件" in html and english_left(html) == []
