"""The portal in Simplified Chinese, in a real browser: a browser that asks for Chinese
gets Chinese pages and Chinese browser strings (status line, footer, source chips,
settings); choosing English in the settings switches the page at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.browser.conftest import (
    Shots,
    ask,
    fresh_page,
    last_answer,
    sign_in,
    wait_answer_state,
)
from tests.web.live import LiveServer
from tests.web.test_i18n import english_left

pytestmark = pytest.mark.browser


@pytest.fixture
def zh_page(browser: Any) -> Iterator[Any]:
    with fresh_page(browser, locale="zh-CN") as page:
        yield page


def ui_english(page: Any) -> list[str]:
    """English left in the page's own words: answers, questions and passages are content."""
    html = page.evaluate(
        """() => {
            const copy = document.documentElement.cloneNode(true);
            for (const el of copy.querySelectorAll(
                '.answer, .message.user, .source-snippet, #i18n-catalog')) el.remove();
            return copy.outerHTML;
        }"""
    )
    return english_left(html)


def test_the_portal_in_chinese(zh_page: Any, extractive_server: LiveServer, shots: Shots) -> None:
    page = zh_page
    page.goto(extractive_server.url + "/login")
    assert page.get_attribute("html", "lang") == "zh-Hans"
    assert page.inner_text("h1") == "登录"
    shots(page, "sign-in")
    sign_in(page, extractive_server, "alice")
    assert page.locator("#new-chat").inner_text() == "新对话"

    ask(page, "员工每年有几天带薪年假？")
    assert wait_answer_state(page, ("done", "error")) == "done"
    msg = last_answer(page)
    answer = msg.locator(".answer").inner_text()
    assert answer.startswith("摘录式回答"), answer  # the server's words follow the question
    footer = msg.locator(".answer-meta").inner_text()
    assert footer.startswith("摘录式回答") and "首个词元" in footer, footer
    heading = msg.locator(".sources-heading").inner_text()
    assert heading.startswith("来源"), heading
    assert "第 1 页" in msg.locator(".sources li.source").first.inner_text()
    page.click("#settings-toggle")
    page.wait_for_selector("#settings-panel", state="visible")
    assert "尚未构建语言模型" in page.inner_text("#model-settings-hint")
    shots(page, "answer-and-settings")
    assert ui_english(page) == []

    # A server error the portal meets is told in Chinese too: the server says it in the
    # page's language (qa/messages.py), with what it is about.
    said = page.evaluate(
        """async () => {
            const { api } = await import('/static/js/portal/api.js');
            try { await api('GET', '/api/v1/chats/no-such-chat'); return 'no error'; }
            catch (err) { return err.message; }
        }"""
    )
    assert said == "没有对话 'no-such-chat'", said

    # English chosen in the settings: the page comes back in English.
    page.select_option("#set-language", "en")
    with page.expect_navigation():
        page.click("#save-settings")
    page.wait_for_selector("body[data-ready='1']")
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("#new-chat").inner_text() == "New chat"
    assert page.input_value("#set-language") == "en"
    shots(page, "switched-to-english")


def test_the_admin_console_in_chinese(
    zh_page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    page = zh_page
    sign_in(page, extractive_server, "admin")
    page.goto(extractive_server.url + "/admin/collections")
    assert page.inner_text("h1") == "文档集"
    page.click("#collections a >> text=handbook")
    page.wait_for_selector("#documents tbody tr")
    assert page.inner_text("#documents thead").split()[:2] == ["名称", "类型"]
    assert "已索引" in page.inner_text("#documents tbody")
    shots(page, "collection")
    assert ui_english(page) == []
    page.goto(extractive_server.url + "/admin/users")
    assert page.inner_text("h1") == "用户"
    shots(page, "users")
    assert ui_english(page) == []
