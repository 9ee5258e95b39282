""" "Sign out everywhere" from the user menu in headless Chromium: every browser of the
user is signed out, someone else's is not, and the user's API token keeps working."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import pytest

from tests.web.browser.conftest import Shots, ask, sign_in
from tests.web.live import LiveServer, create_api_token

pytestmark = pytest.mark.browser


def _me_status(context: Any, server: LiveServer) -> int:
    return int(context.request.get(server.url + "/api/v1/me").status)


def test_sign_out_everywhere_from_the_user_menu(
    browser: Any, page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    token = create_api_token(server.data_dir, "alice", "laptop script")
    sign_in(page, server, "alice")
    phone = browser.new_context(viewport={"width": 390, "height": 800})
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        phone_page = phone.new_page()
        sign_in(phone_page, server, "alice")
        other_page = other.new_page()
        sign_in(other_page, server, "bob")
        assert _me_status(phone, server) == 200

        menu_items = page.locator("#user-menu .user-menu")
        assert not menu_items.is_visible()  # closed until the name is clicked
        page.click("#user-menu summary")
        assert menu_items.is_visible()
        assert page.is_visible("#sign-out-everywhere")
        shots(page, "user-menu-open", full_page=False)

        page.click("#sign-out-everywhere")
        page.wait_for_url(re.compile(r".*/login$"))
        shots(page, "signed-out")

        # The other browser of alice is out at its next click, bob is not: a question
        # from the page it still shows takes it to the sign-in page.
        ask(phone_page, "What is the hotel limit in London?")
        phone_page.wait_for_url(re.compile(r".*/login\?next=%2F$"))
        shots(phone_page, "other-browser-asked-to-sign-in", full_page=False)
        assert _me_status(phone, server) == 401
        assert _me_status(other, server) == 200

        request = urllib.request.Request(
            server.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200  # API tokens are not sessions
    finally:
        phone.close()
        other.close()
