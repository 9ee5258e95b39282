"""Chat history per user: isolation, titles, ordering and the turns handed to the prompt."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from qa.accounts.users import AccountService
from qa.answering.chats import DEFAULT_TITLE, ChatService
from qa.errors import InvalidInput, NotFound
from qa.store.db.engine import Database
from qa.store.db.models import Chat, ChatMessage

PASSWORD = "correct horse battery"


@pytest.fixture
def chats(db: Database) -> ChatService:
    return ChatService(db)


@pytest.fixture
def users(db: Database) -> tuple[int, int]:
    accounts = AccountService(db)
    return (
        accounts.create_user("alice", PASSWORD).user_id,
        accounts.create_user("bob", PASSWORD).user_id,
    )


def _message_rows(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ChatMessage)) or 0)


def test_create_get_and_defaults(chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice)
    assert chat.title == DEFAULT_TITLE and chat.collection_ids == []
    assert len(chat.id) == 32 and int(chat.id, 16) >= 0
    got = chats.get(alice, chat.id)
    assert (got.id, got.user_id, got.title) == (chat.id, alice, DEFAULT_TITLE)
    named = chats.create(alice, title="  Travel  policy ", collection_ids=[3, 1, 3])
    assert named.title == "Travel policy" and named.collection_ids == [1, 3]
    assert chats.create(alice).id != chat.id
    with pytest.raises(NotFound):
        chats.create(999_999)
    with pytest.raises(InvalidInput):
        chats.create(alice, title="   ")


def test_users_cannot_touch_each_others_chats(
    db: Database, chats: ChatService, users: tuple[int, int]
) -> None:
    alice, bob = users
    chat = chats.create(alice, title="private")
    chats.add_message(alice, chat.id, "user", "What is my salary?")
    chats.add_message(alice, chat.id, "assistant", "The documents do not say.")
    attempts: list[Any] = [
        lambda: chats.get(bob, chat.id),
        lambda: chats.rename(bob, chat.id, "mine now"),
        lambda: chats.delete(bob, chat.id),
        lambda: chats.set_collections(bob, chat.id, [1]),
        lambda: chats.add_message(bob, chat.id, "user", "hello"),
        lambda: chats.messages(bob, chat.id),
        lambda: chats.history(bob, chat.id),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound) as err:
            attempt()
        assert str(err.value) == f"no chat {chat.id!r}"  # same as a chat that does not exist
    with pytest.raises(NotFound) as err:
        chats.get(bob, "0" * 32)
    assert str(err.value) == f"no chat {'0' * 32!r}"
    assert chats.list(bob) == []
    assert chats.get(alice, chat.id).title == "private"
    assert len(chats.messages(alice, chat.id)) == 2


def test_list_is_newest_activity_first(chats: ChatService, users: tuple[int, int]) -> None:
    alice, bob = users
    first = chats.create(alice, title="first")
    second = chats.create(alice, title="second")
    chats.create(bob, title="bob's")
    assert [c.title for c in chats.list(alice)] == ["second", "first"]
    chats.add_message(alice, first.id, "user", "a question")
    assert [c.title for c in chats.list(alice)] == ["first", "second"]
    bumped = chats.get(alice, first.id)
    assert bumped.updated_at > bumped.created_at
    chats.rename(alice, second.id, "renamed")  # renaming does not reorder
    assert [c.title for c in chats.list(alice)] == ["first", "renamed"]


def test_rename_and_delete(db: Database, chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice)
    assert chats.rename(alice, chat.id, "  Budget\nQ3  ").title == "Budget Q3"
    assert chats.get(alice, chat.id).title == "Budget Q3"
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(InvalidInput):
            chats.rename(alice, chat.id, bad)
    assert chats.rename(alice, chat.id, "y" * 200).title == "y" * 200

    chats.add_message(alice, chat.id, "user", "q")
    chats.add_message(alice, chat.id, "assistant", "a")
    chats.delete(alice, chat.id)
    with pytest.raises(NotFound):
        chats.get(alice, chat.id)
    with pytest.raises(NotFound):
        chats.delete(alice, chat.id)
    assert _message_rows(db) == 0  # messages went with the chat


def test_set_collections(chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice, collection_ids=[5])
    assert chats.set_collections(alice, chat.id, [9, 2, 9]).collection_ids == [2, 9]
    assert chats.get(alice, chat.id).collection_ids == [2, 9]
    assert chats.set_collections(alice, chat.id, []).collection_ids == []
    for bad in ([True], ["1"], [1.5]):
        with pytest.raises(InvalidInput):
            chats.set_collections(alice, chat.id, bad)  # type: ignore[arg-type]


def test_first_question_titles_the_chat(chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice)
    chats.add_message(alice, chat.id, "assistant", "Hello! Ask me about the handbook.")
    assert chats.get(alice, chat.id).title == DEFAULT_TITLE  # only questions name a chat
    question = "  How many days\nof paid leave do new employees get in their first year here?"
    chats.add_message(alice, chat.id, "user", question)
    title = chats.get(alice, chat.id).title
    assert title == "How many days of paid leave do new employees get in their fi"
    assert len(title) == 60 and "\n" not in title
    chats.add_message(alice, chat.id, "user", "A second question")
    assert chats.get(alice, chat.id).title == title

    short = chats.create(alice)
    chats.add_message(alice, short.id, "user", "Hotel limit?")
    assert chats.get(alice, short.id).title == "Hotel limit?"

    named = chats.create(alice, title="Mine")
    chats.add_message(alice, named.id, "user", "Does not rename")
    assert chats.get(alice, named.id).title == "Mine"

    # renamed back to the default after questions: later questions do not retitle it
    chats.rename(alice, short.id, DEFAULT_TITLE)
    chats.add_message(alice, short.id, "user", "Another one")
    assert chats.get(alice, short.id).title == DEFAULT_TITLE


def test_messages_round_trip(db: Database, chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice)
    meta = {
        "mode": "generative",
        "sources": [{"n": 1, "document": "handbook.pdf", "page": 4}],
        "citations": [[1, 0, 12]],
        "timings": {"first_token_s": 2.5},
    }
    chats.add_message(alice, chat.id, "user", "Hotel limit in London?")
    answer = chats.add_message(alice, chat.id, "assistant", "£200 a night [1].", meta)
    assert answer.meta == meta
    chats.add_message(alice, chat.id, "assistant", "")  # an empty (cancelled) answer is kept
    stored = chats.messages(alice, chat.id)
    assert [(m.role, m.content) for m in stored] == [
        ("user", "Hotel limit in London?"),
        ("assistant", "£200 a night [1]."),
        ("assistant", ""),
    ]
    assert stored[0].meta == {} and stored[1].meta == meta
    # NUL cannot be stored by PostgreSQL; it is dropped rather than failing the request
    chats.add_message(alice, chat.id, "user", "nul\x00here")
    assert chats.messages(alice, chat.id)[-1].content == "nulhere"


@pytest.mark.parametrize(
    ("role", "content", "meta"),
    [
        ("system", "hi", None),
        ("user", "   ", None),
        ("user", 42, None),
        ("user", "x" * 200_001, None),
        ("assistant", "ok", {"bad": object()}),
        ("assistant", "ok", {"nan": float("nan")}),
        ("assistant", "ok", ["not", "a", "mapping"]),
    ],
)
def test_add_message_validates(
    db: Database, chats: ChatService, users: tuple[int, int], role: str, content: Any, meta: Any
) -> None:
    alice, _ = users
    chat = chats.create(alice)
    with pytest.raises(InvalidInput):
        chats.add_message(alice, chat.id, role, content, meta)
    assert _message_rows(db) == 0


def _converse(chats: ChatService, user_id: int, chat_id: str, turns: int) -> None:
    for i in range(1, turns + 1):
        chats.add_message(user_id, chat_id, "user", f"q{i}")
        chats.add_message(user_id, chat_id, "assistant", f"a{i}")


def test_history_is_the_last_turns_oldest_first(chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice)
    assert chats.history(alice, chat.id) == []
    _converse(chats, alice, chat.id, 8)
    history = chats.history(alice, chat.id)
    assert [m["content"] for m in history] == [
        "q3", "a3", "q4", "a4", "q5", "a5", "q6", "a6", "q7", "a7", "q8", "a8",
    ]  # fmt: skip
    assert [m["role"] for m in history] == ["user", "assistant"] * 6
    assert all(set(m) == {"role", "content"} for m in history)
    assert [m["content"] for m in chats.history(alice, chat.id, max_turns=2)] == [
        "q7", "a7", "q8", "a8",
    ]  # fmt: skip
    assert len(chats.history(alice, chat.id, max_turns=100)) == 16
    assert chats.history(alice, chat.id, max_turns=0) == []
    with pytest.raises(InvalidInput):
        chats.history(alice, chat.id, max_turns=-1)


def test_history_keeps_only_answered_questions(chats: ChatService, users: tuple[int, int]) -> None:
    alice, _ = users
    chat = chats.create(alice)
    _converse(chats, alice, chat.id, 1)
    chats.add_message(alice, chat.id, "user", "failed generation")  # never answered
    chats.add_message(alice, chat.id, "user", "q2")
    chats.add_message(alice, chat.id, "assistant", "a2 (cancelled)")
    chats.add_message(alice, chat.id, "assistant", "a2 retry")
    chats.add_message(alice, chat.id, "user", "the question being asked now")
    assert chats.history(alice, chat.id, max_turns=5) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2 retry"},  # the newest answer to q2
    ]


def test_deleting_a_user_deletes_their_chats(
    db: Database, chats: ChatService, users: tuple[int, int]
) -> None:
    alice, bob = users
    mine = chats.create(alice)
    chats.add_message(alice, mine.id, "user", "q")
    theirs = chats.create(bob)
    AccountService(db).delete_user(alice)
    with db.session() as s:
        assert s.scalars(select(Chat.id)).all() == [theirs.id]
    assert _message_rows(db) == 0
