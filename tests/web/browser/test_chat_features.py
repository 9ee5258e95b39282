"""The chat features users expect, in a real browser: copy an answer as Markdown with its
sources as footnotes, regenerate (both answers kept), edit and resend, the open chat
reopened after a reload, history search, export as Markdown, print / save as PDF."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser.conftest import Shots, ask, last_answer, sign_in, wait_answer_state
from tests.web.live import LiveServer, artifacts_dir

pytestmark = pytest.mark.browser

QUESTION = "What is the hotel limit in London?"


def test_copy_regenerate_edit_reopen_search_export_print(
    page: Any, context: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    sign_in(page, server, "alice")
    ask(page, QUESTION)
    assert wait_answer_state(page, ("done", "error")) == "done"
    first = page.locator("#messages .message.assistant").first

    # Copy: the answer as Markdown, each cited [n] a footnote naming the source and page.
    first.locator(".answer-actions .copy-answer").click()
    page.wait_for_function("() => document.querySelector('.copy-answer').textContent !== 'Copy'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "[^1]" in copied and "[1]" not in copied, copied
    assert re.search(r"^\[\^1\]: .+, pp?\. \d", copied, re.M), copied
    assert "EUR 220" in copied

    # Regenerate: asked again in the same chat; the first answer stays.
    first.locator(".answer-actions .regenerate").click()
    page.wait_for_function("() => document.querySelectorAll('.message.assistant').length === 2")
    assert wait_answer_state(page, ("done", "error")) == "done"
    last_answer(page).locator(".regenerate").wait_for()  # once the answer has ended
    assert first.locator(".regenerate").count() == 0  # only the newest answer offers it
    assert page.locator(".message.user").count() == 2
    shots(page, "regenerated")

    # Edit and resend: the question comes back into the composer.
    page.locator(".message.user .edit-question").first.click()
    assert page.input_value("#question") == QUESTION
    assert page.evaluate("document.activeElement.id") == "question"
    page.fill("#question", "")

    # A reload reopens the chat that was open.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_function("() => document.querySelectorAll('.message.assistant').length === 2")
    assert page.locator("#chat-list li.active").count() == 1

    # History search: title and messages; nothing found says so.
    ask_in_new_chat(page, "How many days per week may employees work remotely?")
    assert page.locator("#chat-list li[data-chat-id]").count() == 2
    page.fill("#chat-search", "EUR 220")  # in an answer, not in a title
    page.wait_for_function("() => document.querySelectorAll('#chat-list li').length === 1")
    assert "hotel" in (page.locator("#chat-list .chat-title").first.text_content() or "").lower()
    page.fill("#chat-search", "no chat says this")
    page.wait_for_selector("#chat-list-empty:not([hidden])")
    assert page.text_content("#chat-list-empty") == "No chat matches."
    page.fill("#chat-search", "")
    page.wait_for_function("() => document.querySelectorAll('#chat-list li').length === 2")

    # Export: the open chat as Markdown.
    page.locator("#chat-list .chat-title", has_text="remotely").click()
    page.wait_for_function("() => document.querySelectorAll('.message.assistant').length === 1")
    with page.expect_download() as info:
        page.click("#export-chat")
    download = info.value
    assert download.suggested_filename.endswith(".md")
    text = Path(download.path()).read_text(encoding="utf-8")
    assert text.startswith("# ") and "## Question" in text and "## Answer" in text
    assert "remotely" in text and "[^1]: " in text

    # Print / PDF: the print stylesheet keeps only the conversation.
    page.emulate_media(media="print")
    assert page.locator(".sidebar").is_hidden() and page.locator(".ask-form").is_hidden()
    assert last_answer(page).locator(".answer").is_visible()
    assert last_answer(page).locator(".answer-status").text_content() == ""  # reopened: done
    pdf = artifacts_dir() / "chat-export.pdf"
    page.pdf(path=str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
    shots(page, "print-view")
    page.emulate_media(media="screen")


def ask_in_new_chat(page: Any, question: str) -> None:
    page.click("#new-chat")
    ask(page, question)
    assert wait_answer_state(page, ("done", "error")) == "done"
    page.wait_for_function(
        "() => document.querySelectorAll('#chat-list li[data-chat-id]').length === 2"
    )


def test_thumbs_and_a_comment_reach_the_admins_feedback_view(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    sign_in(page, server, "bob")
    ask(page, QUESTION)
    assert wait_answer_state(page, ("done", "error")) == "done"
    answer = last_answer(page)
    answer.locator(".vote-down").wait_for()  # once the stored answer's id is known
    answer.locator(".vote-down").click()
    answer.locator(".feedback-comment").wait_for(state="visible")
    assert answer.locator(".vote-down").get_attribute("aria-pressed") == "true"
    answer.locator(".feedback-comment input").fill("It should also name Paris.")
    answer.locator(".feedback-comment button").click()
    answer.locator(".feedback-comment").wait_for(state="hidden")
    assert "Thanks" in (answer.locator(".feedback-note").text_content() or "")
    shots(page, "voted", full_page=False)
    page.reload()  # the vote is shown again on the reopened chat
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector(".message.assistant .vote-down[aria-pressed='true']")

    sign_in(page, server, "admin")
    page.goto(server.url + "/admin/feedback?rating=down")
    row = page.locator("#feedback tbody tr[data-rating='down']")
    assert row.count() == 1
    assert "It should also name Paris." in (row.locator(".comment").text_content() or "")
    row.locator("summary").click()
    assert "EUR 220" in (row.locator(".answer-text").text_content() or "")
    shots(page, "admin-feedback")
    with page.expect_download() as info:
        page.click("#feedback-csv")
    text = Path(info.value.path()).read_text(encoding="utf-8")
    assert text.startswith("created_at,username,rating,comment") and "bob,down" in text
