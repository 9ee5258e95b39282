"""The audit log and the run-time app config (both admin-side stores), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from qa.accounts import audit
from qa.accounts.app_config import AppConfig
from qa.accounts.audit import AuditLog
from qa.accounts.users import AccountService, Principal
from qa.errors import InvalidInput, StorageError
from qa.store.db.engine import Database
from qa.store.db.models import AuditEvent, utcnow

PASSWORD = "correct horse battery"


@pytest.fixture
def log(db: Database) -> AuditLog:
    return AuditLog(db)


def test_record_and_list(log: AuditLog) -> None:
    alice = Principal(7, "alice", "admin")
    log.record(audit.SIGN_IN, actor=alice, ip="10.0.0.5")
    log.record(
        audit.UPLOAD,
        actor=alice,
        target="collection:handbook",
        details={"files": ["a.pdf", "b.docx"], "bytes": 1234},
        ip="10.0.0.5",
    )
    log.record(audit.SIGN_IN_FAILED, username="mallory", ip="203.0.113.9")

    events = log.list()
    assert [e.action for e in events] == ["sign_in_failed", "upload", "sign_in"]  # newest first
    failed, upload, sign_in = events
    assert (failed.user_id, failed.username, failed.ip) == (None, "mallory", "203.0.113.9")
    assert failed.details == {}
    assert (upload.user_id, upload.username, upload.target) == (7, "alice", "collection:handbook")
    assert upload.details == {"files": ["a.pdf", "b.docx"], "bytes": 1234}
    assert sign_in.target is None and sign_in.at is not None


def test_username_overrides_the_actors(log: AuditLog) -> None:
    log.record(audit.USER_UPDATE, actor=Principal(1, "root", "admin"), username="root (sudo)")
    (event,) = log.list()
    assert (event.user_id, event.username) == (1, "root (sudo)")


def test_filters_and_paging(log: AuditLog) -> None:
    ann, ben = Principal(1, "ann", "reader"), Principal(2, "ben", "editor")
    for i in range(5):
        log.record(audit.QUESTION, actor=ann, details={"i": i})
    log.record(audit.REINDEX, actor=ben, target="collection:1")
    log.record(audit.QUESTION, actor=ben, details={"i": 99})

    assert [e.details["i"] for e in log.list(action=audit.QUESTION, user_id=1)] == [4, 3, 2, 1, 0]
    assert [e.details["i"] for e in log.list(action="question", limit=2)] == [99, 4]
    assert [e.details["i"] for e in log.list(action="question", limit=2, offset=2)] == [3, 2]
    assert [e.action for e in log.list(user_id=2)] == ["question", "reindex"]
    assert log.list(action="user_delete") == []
    assert log.list(offset=100) == []
    for bad in ({"limit": 0}, {"limit": -5}, {"offset": -1}, {"limit": True}):
        with pytest.raises(InvalidInput):
            log.list(**bad)


def test_limit_is_capped(db: Database, log: AuditLog) -> None:
    now = utcnow()
    with db.session() as s:
        s.add_all(AuditEvent(at=now, action="question", details={}) for _ in range(1001))
        s.commit()
    assert len(log.list(limit=5000)) == audit.MAX_LIST_LIMIT == 1000
    assert len(log.list(limit=5000, offset=1000)) == 1


def test_event_outlives_the_deleted_actor(db: Database, log: AuditLog) -> None:
    accounts = AccountService(db)
    accounts.create_user("root", PASSWORD, "admin")
    temp = accounts.create_user("temp", PASSWORD, "editor")
    log.record(audit.DELETE_DOCUMENT, actor=temp, target="document:abc")
    accounts.delete_user(temp.user_id)
    log.record(audit.USER_DELETE, actor=Principal(1, "root", "admin"), target="user:temp")

    events = log.list(user_id=temp.user_id)
    assert [(e.username, e.action, e.target) for e in events] == [
        ("temp", "delete_document", "document:abc")
    ]
    assert len(log.list()) == 2


def test_long_and_odd_values_are_cut_to_fit(log: AuditLog) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    details: dict[Any, Any] = {
        "long": "x" * 5000,
        "nested": {"deep": [1, 2.5, None, True, ("t", "u")], "obj": Thing()},
        "nan": float("nan"),
        "set": {3},
        "nul": "a\x00b",
        4: "int key",
    }
    log.record(
        "a" * 60,
        username="u" * 100,
        target="t" * 500 + "\x00",
        details=details,
        ip="i" * 100,
    )
    (event,) = log.list()
    assert len(event.action) == 48 and event.action.startswith("aaa")
    assert event.username is not None and len(event.username) == 64
    assert event.target is not None and len(event.target) == 300 and "\x00" not in event.target
    assert event.ip is not None and len(event.ip) == 64
    assert len(event.details["long"]) == audit.MAX_DETAIL_CHARS
    assert event.details["nested"] == {"deep": [1, 2.5, None, True, ["t", "u"]], "obj": "<thing>"}
    assert event.details["nan"] == "nan"
    assert event.details["set"] == [3]
    assert event.details["nul"] == "ab"
    assert event.details["4"] == "int key"


def test_action_is_required(log: AuditLog) -> None:
    for bad in ("", "   "):
        with pytest.raises(InvalidInput):
            log.record(bad)
    assert log.list() == []


def test_database_failure_is_a_storage_error(db: Database, log: AuditLog) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_events"))
    with pytest.raises(StorageError) as err:
        log.record(audit.SIGN_OUT, actor=Principal(1, "a", "reader"))
    assert isinstance(err.value.__cause__, SQLAlchemyError)
    with pytest.raises(StorageError):
        log.list()


def test_action_names_are_distinct_and_fit_the_column() -> None:
    assert len(set(audit.ACTIONS)) == len(audit.ACTIONS) == 34
    assert all(0 < len(a) <= 48 and a == a.strip().lower() for a in audit.ACTIONS)
    names = {n for n in dir(audit) if n.isupper() and isinstance(getattr(audit, n), str)}
    assert {getattr(audit, n) for n in names} == set(audit.ACTIONS)


# --- app config ---------------------------------------------------------------------------


def test_app_config_get_set(db: Database) -> None:
    config = AppConfig(db)
    assert config.get("missing") is None
    assert config.get("missing", 3) == 3
    config.set("limits", {"upload_mb": 50, "types": ["pdf", "docx"]})
    assert config.get("limits") == {"upload_mb": 50, "types": ["pdf", "docx"]}
    config.set("limits", [1, 2])  # replaces
    assert config.get("limits") == [1, 2]
    config.set("flag", False)
    assert config.get("flag", True) is False
    config.unset("flag")
    assert config.get("flag", True) is True

    other_process = Database(db.url, run_migrations=False)
    try:
        assert AppConfig(other_process).get("limits") == [1, 2]  # no cache anywhere
    finally:
        other_process.dispose()


@pytest.mark.parametrize(
    ("key", "value"),
    [("", 1), ("k" * 65, 1), ("ok", object()), ("ok", float("inf")), ("ok", {1j: 2})],
)
def test_app_config_rejects_bad_keys_and_values(db: Database, key: str, value: Any) -> None:
    config = AppConfig(db)
    with pytest.raises(InvalidInput):
        config.set(key, value)
    assert config.get("ok") is None


def test_default_system_prompt(db: Database) -> None:
    config = AppConfig(db)
    assert config.default_system_prompt() is None
    config.set_default_system_prompt("Answer briefly, in English.")
    assert config.default_system_prompt() == "Answer briefly, in English."
    config.set_default_system_prompt("x" * 8000)
    with pytest.raises(InvalidInput):
        config.set_default_system_prompt("x" * 8001)
    assert config.default_system_prompt() == "x" * 8000
    for clear in ("", "   ", None):
        config.set_default_system_prompt("something")
        config.set_default_system_prompt(clear)
        assert config.default_system_prompt() is None
        assert config.get("default_system_prompt") is None
