"""The portal in a real browser: sign in, ask, watch the answer stream, stop it, follow a
citation into the document viewer, find the chat again in the history.

Streaming runs against ``docqa serve`` with the tiny streaming Qwen3 (tests.web.live);
the citation test uses a second server without a model, because extractive answers carry
the exact highlight of the quoted sentence.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.load.streams import iter_sse, leave, open_stream
from tests.web.browser.conftest import Shots, ask, last_answer, sign_in, wait_answer_state
from tests.web.live import LiveServer, create_api_token

pytestmark = pytest.mark.browser

QUESTION = "What is the hotel limit in London?"

# Records, per assistant message, when sources and the first answer text appeared and how
# the answer grew (MutationObserver callbacks run as microtasks right after each change).
OBSERVE = """() => {
  const log = { sources: null, firstText: null, lengths: [], states: [] };
  window.__answerLog = log;
  const box = document.querySelector('#messages');
  const look = () => {
    const all = box.querySelectorAll('.message.assistant');
    const msg = all[all.length - 1];
    if (!msg) return;
    const t = performance.now();
    if (log.sources === null && msg.querySelector('.sources li.source')) log.sources = t;
    const answer = msg.querySelector('.answer');
    const len = answer ? answer.textContent.trim().length : 0;
    if (len > 0 && log.firstText === null) log.firstText = t;
    const last = log.lengths[log.lengths.length - 1];
    if (last === undefined || last[1] !== len) log.lengths.push([t, len]);
    const state = msg.dataset.state;
    if (log.states[log.states.length - 1] !== state) log.states.push(state);
  };
  new MutationObserver(look).observe(box, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}"""


def save_settings(page: Any, *, temperature: str, max_tokens: str) -> None:
    page.click("#settings-toggle")
    page.wait_for_selector("#settings-panel", state="visible")
    page.fill("#set-temperature", temperature)
    page.fill("#set-max-tokens", max_tokens)
    page.click("#save-settings")
    page.wait_for_function(
        "() => document.querySelector('#settings-status').textContent.trim() !== ''"
    )
    status = page.text_content("#settings-status") or ""
    assert "error" not in (page.get_attribute("#settings-status", "class") or ""), status


def answer_length(page: Any) -> int:
    text = last_answer(page).locator(".answer").text_content() or ""
    return len(text.strip())


def test_answer_streams_sources_first_then_tokens_and_is_kept_in_history(
    page: Any, generative_server: LiveServer, shots: Shots
) -> None:
    server = generative_server
    sign_in(page, server, "alice")
    shots(page, "signed-in")
    # Greedy decoding of a few hundred tokens: a stream that lasts about a second or two.
    save_settings(page, temperature="0", max_tokens="300")
    shots(page, "settings")
    page.evaluate(OBSERVE)

    ask(page, QUESTION)
    wait_answer_state(page, ("streaming", "done", "error", "stopped"))
    shots(page, "streaming", full_page=False)
    state = wait_answer_state(page, ("done", "error", "stopped"))
    shots(page, "done")
    msg = last_answer(page)
    assert state == "done", msg.locator(".error").text_content()

    log = page.evaluate("window.__answerLog")
    assert log["sources"] is not None, "no source was ever listed"
    assert log["firstText"] is not None, "no answer text was ever shown"
    assert log["sources"] < log["firstText"], f"sources came after the first token: {log}"
    # Tokens stream: the answer grew in many steps over time, not in one piece.
    growing = [(t, n) for t, n in log["lengths"] if n > 0]
    assert len(growing) >= 5, f"the answer appeared in {len(growing)} steps: {growing}"
    assert growing[-1][0] - growing[0][0] > 50, f"no streaming over time: {growing}"
    assert log["states"][-1] == "done" and "streaming" in log["states"], log["states"]
    print(
        f"\nsources shown {log['firstText'] - log['sources']:.0f} ms before the first token; "
        f"answer grew in {len(growing)} steps over {growing[-1][0] - growing[0][0]:.0f} ms"
    )

    sources = msg.locator(".sources li.source")
    assert sources.count() >= 1
    assert any(
        "travel-and-expenses"
        in (sources.nth(i).text_content() or "")
        + (sources.nth(i).locator("a").get_attribute("title") or "")
        for i in range(sources.count())
    ), "the travel policy is not among the sources"
    assert answer_length(page) > 20
    footer = msg.locator(".answer-meta").text_content() or ""
    # the mode and the model that wrote it (the built folder's source and precision)
    assert "generated answer" in footer and re.search(r" · \S+ \((INT8|FP32)\)", footer), footer
    assert page.locator("#stop").is_hidden()
    assert page.locator("#ask").is_enabled()

    assert page.locator("#model-settings").is_enabled()  # a model is built: they apply
    # History: the chat is listed, survives a reload, and reopens with both messages.
    item = page.locator("#chat-list li[data-chat-id]")
    item.first.wait_for()
    assert "hotel" in (item.first.locator(".chat-title").text_content() or "").lower()
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    item = page.locator("#chat-list li[data-chat-id]")
    assert item.count() == 1
    item.first.locator(".chat-title").click()
    page.wait_for_selector("#messages .message.assistant")
    assert QUESTION in (page.locator("#messages .message.user").first.text_content() or "")
    reopened = last_answer(page)
    assert reopened.get_attribute("data-state") == "done"
    assert reopened.locator(".sources li.source").count() == sources.count()
    assert reopened.locator(".answer-meta").text_content() == footer.split(" · first token")[0]
    shots(page, "history")


def test_stop_ends_the_stream_and_frees_the_model(
    page: Any, generative_server: LiveServer, shots: Shots
) -> None:
    server = generative_server
    sign_in(page, server, "alice")
    # Up to the context window (~2,600 tokens): many seconds of streaming if not stopped.
    save_settings(page, temperature="0", max_tokens="4000")
    assert server.model_state()["busy"] is False

    ask(page, QUESTION)
    page.wait_for_function(
        """() => {
            const all = document.querySelectorAll('#messages .message.assistant');
            const msg = all[all.length - 1];
            return msg && msg.dataset.state === 'streaming'
                && msg.querySelector('.answer').textContent.trim().length > 0;
        }"""
    )
    assert page.locator("#stop").is_visible()
    assert server.model_state()["busy"] is True, "the model is not generating"
    shots(page, "streaming", full_page=False)

    page.click("#stop")
    clicked = time.monotonic()
    assert wait_answer_state(page, ("stopped", "done", "error"), 10_000) == "stopped"
    # The server notices the closed connection at its next token and gives the slot back.
    freed_after = None
    while time.monotonic() - clicked < 5:
        if not server.model_state()["busy"]:
            freed_after = time.monotonic() - clicked
            break
        time.sleep(0.02)
    assert freed_after is not None, "the model was still busy 5 s after Stop"
    print(f"\nStop clicked -> /readyz model free after {freed_after * 1000:.0f} ms")
    assert freed_after < 2.0, f"the model was freed only {freed_after:.2f}s after Stop"
    stopped_len = answer_length(page)
    assert stopped_len > 0
    time.sleep(0.5)
    assert answer_length(page) == stopped_len, "text kept arriving after Stop"
    assert page.locator("#stop").is_hidden()
    assert page.locator("#ask").is_enabled()
    assert "Stopped" in (last_answer(page).locator(".answer-meta").text_content() or "")
    shots(page, "stopped")

    # The partial answer was stored with the chat, marked as stopped.
    page.wait_for_selector("#chat-list li.active[data-chat-id]")
    chat_id = page.get_attribute("#chat-list li.active[data-chat-id]", "data-chat-id")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator(f"#chat-list li[data-chat-id='{chat_id}'] .chat-title").click()
    page.wait_for_selector("#messages .message.assistant")
    assert last_answer(page).get_attribute("data-state") == "stopped"
    shots(page, "reopened")


def test_a_queued_question_shows_its_place_then_streams(
    page: Any, generative_server: LiveServer, shots: Shots
) -> None:
    server = generative_server
    token = create_api_token(server.data_dir, "bob", "occupy-the-model")
    sign_in(page, server, "alice")
    save_settings(page, temperature="0", max_tokens="40")
    # Someone else's long answer holds the model.
    conn, resp = open_stream(
        server.url, token, {"question": QUESTION, "max_tokens": 4000, "temperature": 0}, 30
    )
    try:
        assert resp.status == 200
        for kind, _ in iter_sse(resp):
            if kind == "token":
                break
        ask(page, QUESTION)
        page.wait_for_function(
            """() => {
                const all = document.querySelectorAll('#messages .message.assistant');
                const msg = all[all.length - 1];
                const status = msg ? msg.querySelector('.answer-status') : null;
                return status !== null && status.dataset.phase === 'queued'
                    && /position 1\\b/.test(status.textContent);
            }"""
        )
        msg = last_answer(page)
        assert msg.get_attribute("data-state") == "waiting"
        assert msg.locator(".sources li.source").count() >= 1  # sources while queued
        assert answer_length(page) == 0
        shots(page, "queued", full_page=False)
    finally:
        leave(conn)  # the other client goes away: the model is ours within a few tokens
    assert wait_answer_state(page, ("done", "error", "stopped"), 30_000) == "done"
    assert (last_answer(page).locator(".answer-status").text_content() or "").strip() == ""
    assert answer_length(page) > 0
    shots(page, "answered")


# Logs the status line's phases of the last assistant message, in order.
OBSERVE_PHASES = """() => {
  const phases = [];
  window.__phases = phases;
  const box = document.querySelector('#messages');
  new MutationObserver(() => {
    const all = box.querySelectorAll('.message.assistant .answer-status');
    const status = all[all.length - 1];
    if (!status) return;
    const entry = status.dataset.phase + ':' + status.textContent;
    if (phases[phases.length - 1] !== entry) phases.push(entry);
  }).observe(box, { subtree: true, childList: true, characterData: true, attributes: true });
}"""


def test_answer_first_with_sources_as_compact_chips_and_a_status_that_follows_the_stream(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    sign_in(page, extractive_server, "alice")
    page.set_viewport_size({"width": 1366, "height": 860})
    page.evaluate(OBSERVE_PHASES)
    ask(page, "How many days per week may employees work remotely?")
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = last_answer(page)
    phases = [p.split(":", 1)[0] for p in page.evaluate("window.__phases")]
    # the stream's steps in order (an extractive answer is never queued for the model)
    assert phases[0] == "searching" and phases[-1] == "done", phases
    assert phases.index("found") < phases.index("writing") < phases.index("done"), phases
    found = next(p for p in page.evaluate("window.__phases") if p.startswith("found:"))
    assert re.fullmatch(r"found:Found \d+ sources?", found), found
    assert (msg.locator(".answer-status").text_content() or "") == ""

    # The answer comes first and the whole message fits on a 1366x860 screen.
    answer_box = msg.locator(".answer").bounding_box()
    sources_box = msg.locator("details.sources-box").bounding_box()
    assert answer_box and sources_box and answer_box["y"] < sources_box["y"]
    chips = msg.locator(".sources li.source")
    assert chips.count() >= 3
    assert sources_box["height"] < 140, f"sources take {sources_box['height']} px"
    message_box = msg.bounding_box()
    assert message_box and message_box["height"] < 700
    shots(page, "answer-first", full_page=False)

    # Settings that steer a model are off, and say why, while none is built; theme is not.
    assert "extractive answer" in (msg.locator(".answer-meta").text_content() or "")
    page.click("#settings-toggle")
    page.wait_for_selector("#settings-panel", state="visible")
    for field in ("#set-system-prompt", "#set-temperature", "#set-top-p", "#set-max-tokens"):
        assert page.locator(field).is_disabled(), field
    assert page.locator("#set-theme").is_enabled()
    hint = page.locator("#model-settings-hint")
    assert hint.is_visible() and "No language model is built" in (hint.text_content() or "")
    shots(page, "settings-without-a-model", full_page=False)
    page.click("#settings-toggle")

    # Each chip: number, title, page; the passage shows on hover, as plain text.
    first = chips.first
    assert re.match(r"^1\s", first.locator("a.source-name").inner_text())
    snippet = first.locator(".source-snippet")
    assert snippet.is_hidden()
    first.locator("a.source-name").hover()
    snippet.wait_for(state="visible")
    shots(page, "snippet-on-hover", full_page=False)
    texts = [
        chips.nth(i).locator(".source-snippet").text_content() or "" for i in range(chips.count())
    ]
    assert all(t.strip() for t in texts)
    # the handbook is Markdown ("## Remote work"): its headings must not show as "##"
    names = [chips.nth(i).locator("a.source-name").get_attribute("title") or "" for i in range(3)]
    assert any(n.endswith(".md") for n in names), names
    markdown_marks = re.compile(r"(^|\s)#{1,6}\s|\*\*|\]\(|^\s*[-*]\s")
    assert not [t for t in texts if markdown_marks.search(t)], texts

    # A tap on the chip's "..." opens its passage, and closes the other one.
    page.mouse.move(0, 0)
    second = chips.nth(1)
    second.locator(".snippet-toggle").click()
    assert second.locator(".snippet-toggle").get_attribute("aria-expanded") == "true"
    assert second.locator(".source-snippet").is_visible()
    chips.nth(2).locator(".snippet-toggle").click()
    assert second.locator(".snippet-toggle").get_attribute("aria-expanded") == "false"
    shots(page, "snippet-on-tap", full_page=False)


def test_citation_opens_the_viewer_on_the_cited_pdf_page_with_the_highlight(
    page: Any, context: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    sign_in(page, server, "alice")
    ask(page, QUESTION)
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = last_answer(page)
    shots(page, "answer")

    # The travel policy's source number, then a citation [n] of it in the answer.
    travel_n = None
    doc_id = None
    for i in range(msg.locator(".sources li.source").count()):
        item = msg.locator(".sources li.source").nth(i)
        link = item.locator("a").first
        if "travel-and-expenses" in (
            (item.text_content() or "") + (link.get_attribute("title") or "")
        ):
            travel_n = item.get_attribute("data-n")
            href = link.get_attribute("href") or ""
            match = re.match(r"^/documents/([^/?]+)/view\?", href)
            assert match, f"unexpected source link {href!r}"
            doc_id = match.group(1)
            break
    assert travel_n is not None and doc_id is not None, "travel-and-expenses.pdf not a source"
    citation = msg.locator(f".answer a.citation[data-n='{travel_n}']").first
    href = citation.get_attribute("href") or ""
    assert re.fullmatch(rf"/documents/{re.escape(doc_id)}/view\?page=4&start=\d+&end=\d+", href), (
        href
    )
    assert citation.get_attribute("target") == "_blank"

    with context.expect_page() as popup_info:
        citation.click()
    viewer = popup_info.value
    viewer.wait_for_selector("#viewer[data-ready='1']", timeout=60_000)
    root = viewer.locator("#viewer")
    assert root.get_attribute("data-doc-type") == "pdf"
    assert root.get_attribute("data-current-page") == "4"
    marks = viewer.locator(".pdf-page[data-page='4'] .textLayer .hl")
    assert marks.count() >= 1, "nothing is highlighted on page 4"
    marked = " ".join(marks.all_text_contents())
    assert "220" in marked or "London" in marked, f"highlight is {marked!r}"
    # Only the cited page carries highlights.
    assert viewer.locator(".pdf-page:not([data-page='4']) .hl").count() == 0
    # The highlighted page is scrolled into view.
    box = viewer.locator(".pdf-page[data-page='4']").bounding_box()
    assert box is not None
    height = viewer.evaluate("window.innerHeight")
    assert box["y"] < height and box["y"] + box["height"] > 0, box
    shots(viewer, "viewer-page-4", full_page=False)


def test_collection_picker_lists_only_readable_collections(
    page: Any, context: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    ids = server.collection_ids()

    def picker() -> set[str]:
        values = page.eval_on_selector_all(
            "#collection-picker input[type=checkbox][name=collection]",
            "els => els.map(e => e.value)",
        )
        return set(values)

    sign_in(page, server, "bob")
    assert picker() == {str(ids["handbook"])}
    assert "finance" not in (page.text_content("#collection-picker") or "")
    shots(page, "bob-picker")

    page.click("#user-menu summary")
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/login.*"))
    sign_in(page, server, "alice")
    assert picker() == {str(ids["handbook"]), str(ids["finance"])}
    shots(page, "alice-picker")
