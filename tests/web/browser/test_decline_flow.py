"""The portal shows a decline first (issue 11): the decline sentence as the answer, the
sources collapsed under "Closest passages"; an answered question shows its answer above
the sources, visible without scrolling on a 1366x860 screen. Extractive server, real
Chromium."""

from __future__ import annotations

from typing import Any

from qa.answering.decline import DECLINE_SENTENCES
from tests.web.browser.conftest import Shots, ask, last_answer, sign_in, wait_answer_state
from tests.web.live import LiveServer

SCREEN = {"width": 1366, "height": 860}


def test_decline_first_then_closest_passages_collapsed_and_answers_above_sources(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    page.set_viewport_size(SCREEN)
    sign_in(page, extractive_server, "alice")

    ask(page, "What is the capital of France?")
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = last_answer(page)
    assert msg.get_attribute("data-outcome") == "not_found"
    assert (msg.locator(".answer").text_content() or "").strip() == DECLINE_SENTENCES["en"]
    assert msg.locator(".answer a.citation").count() == 0
    assert msg.locator(".answer blockquote").count() == 0
    box = msg.locator("details.sources-box")
    assert (box.locator("summary").text_content() or "").startswith("Closest passages")
    assert box.get_attribute("open") is None, "closest passages are collapsed"
    assert msg.locator(".sources li.source").count() >= 1
    assert not msg.locator(".sources li.source").first.is_visible()
    assert "not found in your documents" in (msg.locator(".answer-meta").text_content() or "")
    shots(page, "declined", full_page=False)
    box.locator("summary").click()
    assert msg.locator(".sources li.source").first.is_visible()

    ask(page, "What is the hotel limit in London?")
    page.wait_for_function(
        "() => document.querySelectorAll('#messages .message.assistant').length === 2"
    )
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = last_answer(page)
    assert msg.get_attribute("data-outcome") == "answered"
    assert "EUR 220" in (msg.locator(".answer").text_content() or "")
    answer_box = msg.locator(".answer").bounding_box()
    sources_box = msg.locator("details.sources-box").bounding_box()
    assert answer_box is not None and sources_box is not None
    assert answer_box["y"] < sources_box["y"], "the answer comes before its sources"
    msg.scroll_into_view_if_needed()
    top = msg.bounding_box()
    answer_box = msg.locator(".answer").bounding_box()
    assert top is not None and answer_box is not None
    # The whole answer fits on the screen together with the top of its message.
    assert answer_box["y"] + answer_box["height"] - top["y"] < SCREEN["height"]
    shots(page, "answered", full_page=False)

    # Reopened from the history, the decline is still a decline.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#chat-list li[data-chat-id] .chat-title").first.click()
    page.wait_for_selector("#messages .message.assistant[data-outcome='not_found']")
    first = page.locator("#messages .message.assistant").first
    assert first.get_attribute("data-outcome") == "not_found"
    summary = first.locator("details.sources-box summary").text_content() or ""
    assert summary.startswith("Closest passages")
