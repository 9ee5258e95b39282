"""Summaries in a real browser against a real ``docqa serve`` (embedded mode, no model):
the console's Summarize button, the portal's Summaries page with progress, the result
with page links into the viewer, the downloads, and a summary submitted from the page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.browser.conftest import Shots, sign_in
from tests.web.live import LiveServer

pytestmark = pytest.mark.browser


def _collection_id(page: Any, server: LiveServer, name: str) -> int:
    resp = page.request.get(server.url + "/api/v1/collections")
    assert resp.ok
    return next(int(c["id"]) for c in resp.json()["collections"] if c["name"] == name)


def test_summarize_from_the_console_and_read_it_in_the_portal(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    sign_in(page, server, "editor")
    hb = _collection_id(page, server, "handbook")
    page.goto(f"{server.url}/admin/collections/{hb}")
    row = page.locator("#documents tr", has_text="travel-and-expenses.pdf")
    row.locator("button", has_text="Summarize").click()
    page.wait_for_url(re.compile(r"/summaries\?job=[0-9a-f]{32}$"))
    shots(page, "submitted")

    # The page follows the job and opens its result once it is done.
    page.wait_for_selector("#summary-result:not(.hidden) #result-statements li", timeout=90_000)
    shots(page, "result")
    assert "Summary of" in (page.text_content("#result-title") or "")
    assert "Extractive summary" in (page.text_content("#result-label") or "")
    links = page.locator("#result-statements a.page-link")
    assert links.count() >= 3
    href = links.first.get_attribute("href") or ""
    assert re.fullmatch(r"/documents/[0-9a-f]{40}/view\?page=\d+(&start=\d+&end=\d+)?", href)
    job_id = page.url.rsplit("=", 1)[1]
    assert page.get_attribute("#download-md", "href") == f"/api/v1/summaries/{job_id}.md"
    md = page.request.get(server.url + f"/api/v1/summaries/{job_id}.md")
    assert md.ok and md.text().startswith("# Summary of")
    assert "attachment" in md.headers["content-disposition"]
    assert page.locator(f'li.summary-job[data-job-id="{job_id}"] .badge.done').count() == 1

    # A page link opens the viewer on that page.
    with page.context.expect_page() as opened:
        links.first.click()
    viewer = opened.value
    viewer.wait_for_load_state()
    assert "/view?page=" in viewer.url
    viewer.close()

    # In Chinese (the editor's language setting) the page and the summary's label follow.
    csrf = page.get_attribute('meta[name="csrf-token"]', "content") or ""
    saved = page.request.put(
        server.url + "/api/v1/me/preferences",
        data={"language": "zh"},
        headers={"X-CSRF-Token": csrf},
    )
    assert saved.ok, saved.text()
    page.reload()
    page.wait_for_selector("#summary-result:not(.hidden) #result-statements li")
    assert page.inner_text("h1") == "摘要"
    assert (page.text_content("#result-label") or "").startswith("摘录式摘要")
    assert re.search(r"（?\(?第 \d+ 页\)", page.text_content("#result-statements") or "")
    assert (
        page.locator(f'li.summary-job[data-job-id="{job_id}"] .badge.done').inner_text() == "已完成"
    )
    shots(page, "result-in-chinese")
    # back to the browser's language: the module's other tests share this account
    csrf = page.get_attribute('meta[name="csrf-token"]', "content") or ""
    reset = page.request.put(
        server.url + "/api/v1/me/preferences",
        data={"language": None},
        headers={"X-CSRF-Token": csrf},
    )
    assert reset.ok, reset.text()


def test_submit_a_collection_summary_from_the_page(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    sign_in(page, server, "editor")
    page.goto(server.url + "/summaries")
    page.select_option("#summary-collection", value=str(_collection_id(page, server, "handbook")))
    page.wait_for_selector("#summary-document:not([disabled])")
    assert page.locator("#summary-document option").count() == 4
    page.click("#summarize-collection")
    page.wait_for_function(
        "() => document.querySelector('#summary-form-status').textContent.startsWith('Queued')"
    )
    job = page.locator("li.summary-job", has_text="collection").first
    job.locator(".badge.done").wait_for(timeout=90_000)
    job.locator("button", has_text="Show").click()
    page.wait_for_selector("#result-documents details")
    shots(page, "collection")
    assert page.locator("#result-documents details").count() == 4
    assert "collection handbook" in (page.text_content("#result-title") or "")


def test_readers_see_only_the_document_form(page: Any, extractive_server: LiveServer) -> None:
    sign_in(page, extractive_server, "bob")
    page.goto(extractive_server.url + "/summaries")
    assert page.locator("#summarize-collection").count() == 0
    options = page.locator("#summary-collection option").all_text_contents()
    assert [o.split(" (")[0] for o in options] == ["handbook"]  # finance is not his
    page.wait_for_selector("#summary-document:not([disabled])")
    page.click("#summarize-document")
    page.locator("li.summary-job .badge.done").wait_for(timeout=90_000)
