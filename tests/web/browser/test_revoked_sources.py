"""The portal's chat history after a grant is revoked: the stored answer stays, its sources
read "source no longer available" and nothing links into the document any more."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.browser.conftest import Shots, ask, last_answer, sign_in, wait_answer_state
from tests.web.live import LiveServer

pytestmark = pytest.mark.browser


def revoke(server: LiveServer, username: str, collection: str) -> None:
    """Remove the user's grant straight in the server's database (read on every request)."""
    from qa.accounts.access import AccessService
    from qa.accounts.users import AccountService
    from qa.settings import Settings
    from qa.store.db.engine import Database

    db = Database(Settings(data_dir=server.data_dir).db_url)
    try:
        user = next(u for u in AccountService(db).list_users() if u.username == username)
        AccessService(db).revoke(server.collection_ids()[collection], user_id=user.id)
    finally:
        db.dispose()


def test_history_shows_revoked_sources_as_no_longer_available(
    page: Any, extractive_server: LiveServer, shots: Shots
) -> None:
    server = extractive_server
    sign_in(page, server, "bob")  # bob reads the handbook only
    ask(page, "What is the hotel limit in London?")
    assert wait_answer_state(page, ("done", "error")) == "done"
    answer = (last_answer(page).locator(".answer").text_content() or "").strip()
    assert last_answer(page).locator(".sources a.source-name").count() >= 1
    page.wait_for_selector("#chat-list li.active[data-chat-id]")
    chat_id = page.get_attribute("#chat-list li.active[data-chat-id]", "data-chat-id")

    revoke(server, "bob", "handbook")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator(f"#chat-list li[data-chat-id='{chat_id}'] .chat-title").click()
    msg = last_answer(page)
    msg.locator(".sources li.source.unavailable").first.wait_for()
    shots(page, "history-revoked")
    items = msg.locator(".sources li.source")
    assert items.count() == msg.locator(".sources li.source.unavailable").count() >= 1
    assert "source no longer available" in (items.first.text_content() or "")
    assert msg.locator(".sources a").count() == 0
    assert msg.locator(".answer a.citation").count() == 0
    assert (msg.locator(".answer").text_content() or "").strip() == answer
