"""The question use-case every channel shares: access filter inside retrieval, chat
records, audit. Real retrieval over the seeded collections (extractive answers)."""

from __future__ import annotations

import pytest

from qa.accounts.access import READ
from qa.errors import InvalidInput, NotFound
from tests.web.conftest import SECRET_PHRASE, WebEnv

# Access checks and deletes are queries: held on both databases.
pytestmark = pytest.mark.both_databases

FALCON_QUESTION = "What is the budget of Project Falcon?"


def _events(env: WebEnv, user: str, question: str, **kw: object) -> list[dict[str, object]]:
    events = env.svc.questions.ask(env.users[user], question, **kw)  # type: ignore[arg-type]
    return [e.to_json() for e in events]


def _leaks(events: list[dict[str, object]]) -> bool:
    return SECRET_PHRASE in repr(events)


def test_reader_gets_granted_collection(web: WebEnv) -> None:
    events = _events(web, "alice", FALCON_QUESTION)
    assert events[0]["type"] == "sources"
    assert _leaks(events)


def test_other_reader_never_gets_the_chunk(web: WebEnv) -> None:
    events = _events(web, "bob", FALCON_QUESTION)
    assert not _leaks(events)
    sources = events[0]["sources"]
    assert isinstance(sources, list)
    assert all(s["collection"] == "handbook" for s in sources)


def test_naming_an_unreadable_collection_is_not_found(web: WebEnv) -> None:
    with pytest.raises(NotFound):
        web.svc.questions.ask(
            web.users["bob"], FALCON_QUESTION, collection_ids=[web.collections["finance"]]
        )
    with pytest.raises(NotFound):
        web.svc.questions.ask(web.users["bob"], FALCON_QUESTION, collection_ids=[999])
    with pytest.raises(InvalidInput):
        web.svc.questions.ask(web.users["bob"], FALCON_QUESTION, collection_ids=["1"])  # type: ignore[list-item]


def test_revocation_takes_effect_on_the_next_question(web: WebEnv) -> None:
    finance = web.collections["finance"]
    bob = web.users["bob"].user_id
    web.svc.access.grant(finance, READ, user_id=bob)
    assert _leaks(_events(web, "bob", FALCON_QUESTION))
    web.svc.access.revoke(finance, user_id=bob)
    assert not _leaks(_events(web, "bob", FALCON_QUESTION))


def test_group_membership_is_read_at_question_time(web: WebEnv) -> None:
    finance = web.collections["finance"]
    group = web.svc.accounts.create_group("finance-team")
    web.svc.access.grant(finance, READ, group_id=group.id)
    web.svc.accounts.set_members(group.id, [web.users["bob"].user_id])
    assert _leaks(_events(web, "bob", FALCON_QUESTION))
    web.svc.accounts.set_members(group.id, [])
    assert not _leaks(_events(web, "bob", FALCON_QUESTION))


def test_deleted_document_is_gone_at_once(web: WebEnv) -> None:
    alice = web.users["alice"]
    docs = web.svc.library.documents(web.users["admin"], web.collections["finance"])
    assert len(docs) == 1
    web.svc.library.delete_documents(web.users["admin"], [docs[0].id])
    # No wait for the republish: hydration drops rows the DB no longer has.
    assert not _leaks(list(web.svc.questions.ask(alice, FALCON_QUESTION)))
    web.wait_ingested()
    assert not _leaks(list(web.svc.questions.ask(alice, FALCON_QUESTION)))


def test_deleted_collection_is_gone_at_once(web: WebEnv) -> None:
    web.svc.library.delete_collection(web.users["admin"], web.collections["finance"])
    assert not _leaks(_events(web, "alice", FALCON_QUESTION))


def test_reader_without_grants_gets_a_clear_error(web: WebEnv) -> None:
    web.svc.accounts.create_user("carol", "carol-password-1", "reader")
    carol = web.svc.accounts.authenticate("carol", "carol-password-1")
    with pytest.raises(InvalidInput, match="may not read any collection"):
        web.svc.questions.ask(carol, "anything")


def test_chat_keeps_question_and_answer(web: WebEnv) -> None:
    alice = web.users["alice"]
    chat = web.svc.chats.create(alice.user_id)
    events = [
        e.to_json()
        for e in web.svc.questions.ask(alice, "What is the hotel limit in London?", chat_id=chat.id)
    ]
    messages = web.svc.chats.messages(alice.user_id, chat.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    citations = next(e for e in events if e["type"] == "citations")
    assert messages[1].content == citations["text"]
    assert messages[1].meta["finish_reason"] == "stop"
    assert messages[1].meta["sources"][0]["document_id"]
    # Another user cannot ask into it.
    with pytest.raises(NotFound):
        web.svc.questions.ask(web.users["bob"], "hello", chat_id=chat.id)


def test_client_leaving_keeps_the_partial_answer(web: WebEnv) -> None:
    alice = web.users["alice"]
    chat = web.svc.chats.create(alice.user_id)
    stream = web.svc.questions.ask(alice, "What is the hotel limit in London?", chat_id=chat.id)
    first = next(stream)
    assert first.type == "sources"
    stream.close()  # what the WSGI server does when the browser goes away
    messages = web.svc.chats.messages(alice.user_id, chat.id)
    assert messages[-1].role == "assistant"
    assert messages[-1].meta["finish_reason"] == "cancelled"


def test_every_question_is_audited_with_document_ids(web: WebEnv) -> None:
    events = _events(web, "alice", "What is the hotel limit in London?", ip="10.0.0.7")
    returned = sorted({s["document_id"] for s in events[0]["sources"]})  # type: ignore[index, union-attr]
    entry = web.svc.audit.list(action="question")[0]
    assert entry.username == "alice"
    assert entry.ip == "10.0.0.7"
    assert entry.details["document_ids"] == returned


def test_admin_default_system_prompt_is_used(web: WebEnv) -> None:
    """The default set in the admin console reaches the prompt; an explicit one wins."""
    from qa.answering.answer_service import AskOptions

    seen: list[str | None] = []
    original = web.svc.answers.ask

    def spy(question, ids, options=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(options.system_prompt if options else None)
        return original(question, ids, options, **kw)

    web.svc.answers.ask = spy  # type: ignore[method-assign]
    web.svc.config.set_default_system_prompt("Answer like a pirate.")
    list(web.svc.questions.ask(web.users["alice"], "hotel limit?"))
    list(
        web.svc.questions.ask(
            web.users["alice"], "hotel limit?", options=AskOptions(system_prompt="Mine.")
        )
    )
    assert seen == ["Answer like a pirate.", "Mine."]
