"""The admin console in a real browser: upload several files at once to a collection and
watch each one reach its final state (indexed, or failed with the reason shown)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.browser.conftest import Shots, sign_in
from tests.web.live import LiveServer

pytestmark = pytest.mark.browser

GOOD_MD = b"""# Parking rules

Visitors park on level minus two of the Lumen Harbor garage; the code is quasar-7312.
Staff badges open the barrier at the north ramp.
"""
GOOD_TXT = b"""Plant care rota

The office ficus named Bartholomew-9 is watered on Tuesdays by the facilities team.
Nobody else waters it, however thirsty it looks.
"""
BROKEN_PDF = b"%PDF-1.7\n1 0 obj <<"
FINAL = ("indexed", "failed")


def test_upload_three_files_two_index_and_the_broken_one_fails_with_its_reason(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    handbook = server.collection_ids()["handbook"]
    sign_in(page, server, "admin")
    page.goto(f"{server.url}/admin/collections/{handbook}")
    page.wait_for_selector("#upload-input", state="attached")
    page.wait_for_selector("#drop-zone")
    assert page.locator("a#nav-collections").count() == 1, "admin sub-nav link missing"
    shots(page, "collection")

    files = [
        {"name": "parking-rules.md", "mimeType": "text/markdown", "buffer": GOOD_MD},
        {"name": "plant-care.txt", "mimeType": "text/plain", "buffer": GOOD_TXT},
        {"name": "broken.pdf", "mimeType": "application/pdf", "buffer": BROKEN_PDF},
    ]
    page.set_input_files("#upload-input", files)  # the upload starts on selection
    rows = page.locator("#upload-list .upload")
    rows.nth(2).wait_for()
    assert rows.count() == 3
    page.wait_for_function(
        """(final) => {
            const rows = [...document.querySelectorAll('#upload-list .upload')];
            return rows.length === 3 && rows.every((r) => final.includes(r.dataset.state));
        }""",
        arg=list(FINAL),
        timeout=120_000,
    )
    shots(page, "uploaded")

    def row(name: str) -> Any:
        return page.locator(f"#upload-list .upload[data-name='{name}']")

    for name in ("parking-rules.md", "plant-care.txt"):
        assert row(name).get_attribute("data-state") == "indexed", row(name).text_content()
        assert (row(name).locator(".state").text_content() or "").strip() == "indexed"
        assert row(name).locator(".progress").count() == 1
    broken = row("broken.pdf")
    assert broken.get_attribute("data-state") == "failed"
    reason = (broken.locator(".state").text_content() or "").strip()
    assert re.match(r"failed: \S", reason), f"no reason shown: {reason!r}"
    assert "unknown reason" not in reason

    # The documents table (refreshed by the page's poll, and after a reload) agrees.
    page.reload()
    page.wait_for_selector("#documents")
    table = page.locator("#documents tbody tr[data-doc-id]")
    by_name: dict[str, Any] = {}
    for i in range(table.count()):
        tr = table.nth(i)
        name = (tr.locator(".name").text_content() or "").strip()
        by_name[name.split("\n")[0].strip()] = tr
    for name in ("parking-rules.md", "plant-care.txt"):
        match = [tr for n, tr in by_name.items() if n.startswith(name)]
        assert match, f"{name} missing from the documents table: {list(by_name)}"
        assert (match[0].locator(".status").text_content() or "").strip() == "indexed"
    failed = [tr for n, tr in by_name.items() if n.startswith("broken.pdf")]
    assert failed, f"broken.pdf missing from the documents table: {list(by_name)}"
    assert (failed[0].locator(".status").text_content() or "").strip() == "failed"
    table_reason = (failed[0].locator(".reason").text_content() or "").strip()
    assert table_reason and table_reason in reason, (table_reason, reason)
    shots(page, "documents-table")

    # Progress followed the real stages: a finished file's bar is full; the upload alone
    # filled only part of it.
    page.goto(page.url)
    for name in ("parking-rules.md", "plant-care.txt"):
        assert page.locator(f"#documents a.preview:text-is('{name}')").count() == 1
    assert failed[0].locator("button", has_text="Retry").count() == 0  # no retry can help
    assert page.locator("#retry-failed button").is_disabled()
    assert "could not be read (1)" in (page.text_content("#failures-by-reason") or "")
    assert re.match(r"· [\d.]+ (kB|bytes?)$", (page.text_content("#storage-used") or "").strip())

    # Find by name: the table keeps only the matching rows.
    page.fill("#doc-search", "plant")
    visible = page.locator("#documents tbody tr[data-doc-id]:visible")
    assert visible.count() == 1 and "plant-care.txt" in (visible.first.text_content() or "")
    shots(page, "found-by-name")
    page.fill("#doc-search", "")
    assert page.locator("#documents tbody tr[data-doc-id]:visible").count() == table.count()

    # Preview: the document opens in the viewer.
    with page.context.expect_page() as opened:
        page.locator("#documents a.preview:text-is('plant-care.txt')").click()
    viewer = opened.value
    viewer.wait_for_load_state()
    assert "/view" in viewer.url and "plant-care.txt" in (
        viewer.text_content("h1, .viewer-sub") or ""
    )
