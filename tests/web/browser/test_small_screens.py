"""Phones and small screens: the portal and the console at 390, 768 and 1366 px wide.
Nothing is cut off or scrolls sideways; on a phone the top bar folds into a menu, the
sidebar becomes a drawer, and the composer stays on screen."""

from __future__ import annotations

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

pytestmark = pytest.mark.browser

WIDTHS = {
    "phone": (390, 844),
    "phone-zh": (390, 844),  # the same phone, in Chinese
    "tablet": (768, 1024),
    "laptop": (1366, 860),
}


@pytest.fixture(params=list(WIDTHS))
def sized(request: pytest.FixtureRequest, browser: Any) -> Any:
    width, height = WIDTHS[request.param]
    with fresh_page(
        browser,
        viewport={"width": width, "height": height},
        is_mobile=request.param.startswith("phone"),
        has_touch=request.param != "laptop",
        locale="zh-CN" if request.param.endswith("-zh") else "en-US",
    ) as page:
        yield request.param, page


def no_sideways_scroll(page: Any) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"


def on_screen(page: Any, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5, (selector, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 0.5, (selector, box)


def test_the_portal_fits(sized: Any, extractive_server: LiveServer, shots: Shots) -> None:
    kind, page = sized
    sign_in(page, extractive_server, "alice")
    ask(page, "How many days of annual leave do employees get?")
    assert wait_answer_state(page, ("done", "error")) == "done"
    shots(page, f"{kind}-answer", full_page=False)
    no_sideways_scroll(page)
    on_screen(page, "#question")
    on_screen(page, "#ask")
    on_screen(page, "#user-menu > summary")
    answer = last_answer(page).locator(".answer").bounding_box()
    assert answer is not None and answer["width"] >= page.viewport_size["width"] * 0.55
    if not kind.startswith("phone"):
        assert page.locator("#topnav").is_visible() and page.locator("#sidebar").is_visible()
        assert page.locator("#menu-toggle").is_hidden()
        assert page.locator("#sidebar-toggle").is_hidden()
        return
    # The phone: links behind the menu, the sidebar behind its button.
    assert page.locator("#topnav").is_hidden() and page.locator("#menu-toggle").is_visible()
    page.click("#menu-toggle")
    page.locator("#topnav").wait_for(state="visible")
    on_screen(page, "#topnav a[data-nav='summaries']")
    shots(page, "phone-menu", full_page=False)
    page.keyboard.press("Escape")
    page.locator("#topnav").wait_for(state="hidden")
    sidebar = page.locator("#sidebar").bounding_box()
    assert sidebar is not None and sidebar["x"] + sidebar["width"] <= 0  # off screen
    page.click("#sidebar-toggle")
    page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().left >= 0"
    )
    on_screen(page, "#new-chat")
    shots(page, "phone-drawer", full_page=False)
    # Picking a chat closes the drawer and shows it.
    page.locator("#chat-list li[data-chat-id] .chat-title").first.click()
    page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().right <= 0"
    )
    page.wait_for_selector("#messages .message.assistant")
    on_screen(page, "#question")


def test_the_console_fits(sized: Any, extractive_server: LiveServer, shots: Shots) -> None:
    kind, page = sized
    sign_in(page, extractive_server, "admin")
    page.goto(extractive_server.url + "/admin/collections")
    page.click("#collections a >> text=handbook")
    page.wait_for_selector("#documents tbody tr")
    shots(page, f"{kind}-collection", full_page=False)
    no_sideways_scroll(page)  # the documents table scrolls inside its card
    on_screen(page, "#user-menu > summary")
