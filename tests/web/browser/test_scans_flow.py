"""A scanned PDF in a real browser: the admin uploads an image-only PDF, it is indexed by
OCR (the console says so), a question about it is answered with a citation to its second
page, and the viewer draws the quoted lines' boxes over the scan."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ingest.ocr_pages import font_missing, render_page, scanned_pdf
from tests.qa.test_answer_scans import COVER, PARKING
from tests.web.browser.conftest import Shots, ask, last_answer, sign_in, wait_answer_state
from tests.web.live import LiveServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(font_missing("en") is not None, reason=str(font_missing("en"))),
]

NAME = "facilities-scan.pdf"


def test_a_scanned_pdf_is_indexed_by_ocr_answered_and_highlighted_on_the_scan(
    page: Any, context: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    handbook = server.collection_ids()["handbook"]
    sign_in(page, server, "admin")
    page.goto(f"{server.url}/admin/collections/{handbook}")
    page.wait_for_selector("#upload-input", state="attached")
    scan = scanned_pdf([render_page(COVER, "en"), render_page(PARKING, "en")])
    page.set_input_files(
        "#upload-input", [{"name": NAME, "mimeType": "application/pdf", "buffer": scan}]
    )
    row = page.locator(f"#upload-list .upload[data-name='{NAME}']")
    row.wait_for()
    page.wait_for_function(
        """(name) => {
            const row = document.querySelector(`#upload-list .upload[data-name='${name}']`);
            return row && ['indexed', 'failed'].includes(row.dataset.state);
        }""",
        arg=NAME,
        timeout=120_000,
    )
    assert row.get_attribute("data-state") == "indexed", row.text_content()

    # The documents table marks it as read by OCR, live and after a reload.
    for reload in (False, True):
        if reload:
            page.reload()
        ocr = page.locator(f"#documents tr:has(a.preview:text-is('{NAME}')) .badge.ocr")
        ocr.wait_for()
        assert (ocr.text_content() or "").strip() == "OCR"
        assert ocr.get_attribute("title") == "2 pages read by OCR"
    shots(page, "indexed-by-ocr")

    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    ask(page, "When does the Elm Street parking garage close?")
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = last_answer(page)
    assert "22:00" in (msg.locator(".answer").text_content() or "")
    citation = msg.locator(".answer a.citation").first
    href = citation.get_attribute("href") or ""
    assert "/view?page=2&start=" in href, href
    shots(page, "answer-from-scan")

    with context.expect_page() as popup_info:
        citation.click()
    viewer = popup_info.value
    viewer.wait_for_selector("#viewer[data-ready='1']", timeout=60_000)
    root = viewer.locator("#viewer")
    assert root.get_attribute("data-current-page") == "2"
    boxes = viewer.locator(".pdf-page[data-page='2'] .ocr-box")
    assert boxes.count() >= 1, "no line of the scan is highlighted"
    assert viewer.locator(".pdf-page:not([data-page='2']) .ocr-box").count() == 0
    assert (viewer.text_content("#viewer-status") or "").strip() == ""
    page_box = viewer.locator(".pdf-page[data-page='2']").bounding_box()
    first = boxes.first.bounding_box()
    assert page_box is not None and first is not None
    inside = page_box["x"] <= first["x"] and first["x"] + first["width"] <= page_box["x"] + (
        page_box["width"] + 1
    )
    assert inside and first["height"] > 4, (page_box, first)
    boxes.first.scroll_into_view_if_needed()
    shots(viewer, "viewer-ocr-boxes", full_page=False)
