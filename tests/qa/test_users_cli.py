"""``docqa users`` on real SQLite and PostgreSQL: the way back in when nobody can sign in as
admin. Each change is audited, a new password or disabling ends browser sessions, and every
bad input is a one-line error with exit status 1."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main as docqa
from qa.accounts.audit import AuditLog
from qa.accounts.sessions import SessionService
from qa.accounts.users import AccountService
from qa.errors import Unauthenticated
from qa.store.db.engine import Database
from tests.qa.conftest import PASSWORD


@pytest.fixture
def users(db: Database, db_url: str, tmp_path: Path) -> Any:
    AccountService(db).create_user("root", PASSWORD, role="admin")

    def run(*args: str, stdin: str | None = None) -> Any:
        result = CliRunner().invoke(
            docqa,
            ["--data-dir", str(tmp_path / "var"), "users", *args],
            input=stdin,
            env={"DOCQA_DATABASE_URL": db_url},
        )
        assert "Traceback" not in result.output
        return result

    return run


def printed_password(output: str) -> str:
    match = re.search(r"password for \S+: (\S+)", output)
    assert match, output
    return match.group(1)


def test_create_reset_disable_enable_and_list(db: Database, users: Any) -> None:
    accounts = AccountService(db)
    made = users("create", "alice", "--role", "admin")
    assert made.exit_code == 0, made.output
    first = printed_password(made.output)
    assert accounts.authenticate("alice", first).role == "admin"
    typed = users("create", "bob", "--password-stdin", stdin="a typed password\n")
    assert typed.exit_code == 0 and "password for" not in typed.output
    assert accounts.authenticate("bob", "a typed password").role == "reader"

    sessions = SessionService(db, lifetime=timedelta(hours=1))
    cookie = sessions.start(accounts.authenticate("alice", first).user_id)
    reset = users("reset-password", "ALICE")
    assert reset.exit_code == 0 and "1 sessions ended" in reset.output
    second = printed_password(reset.output)
    with pytest.raises(Unauthenticated):
        accounts.authenticate("alice", first)
    with pytest.raises(Unauthenticated):
        sessions.principal(cookie)
    assert accounts.authenticate("alice", second).username == "alice"

    assert users("disable", "bob").exit_code == 0
    with pytest.raises(Unauthenticated):
        accounts.authenticate("bob", "a typed password")
    assert users("enable", "bob").exit_code == 0
    assert accounts.authenticate("bob", "a typed password").username == "bob"

    listed = [json.loads(line) for line in users("list", "--json").output.splitlines()]
    assert [(u["username"], u["role"], u["disabled"]) for u in listed] == [
        ("alice", "admin", False),
        ("bob", "reader", False),
        ("root", "admin", False),
    ]
    assert "alice" in users("list").output
    changes = [(e.action, e.target, e.details.get("via")) for e in AuditLog(db).list()]
    assert ("user_create", "alice", "docqa users") in changes
    assert ("user_update", "alice", "docqa users") in changes
    assert any(action == "sessions_ended" and target == "alice" for action, target, _ in changes)


def test_bad_input_is_a_clear_error(db: Database, users: Any, tmp_path: Path) -> None:
    users("create", "carol", "--password-stdin", stdin="carol's password\n")
    for args, stdin, message in [
        (("reset-password", "nobody"), None, "no user named 'nobody'"),
        (("create", "carol"), None, "is taken"),
        (("create", "dave", "--password-stdin"), "short\n", "passwords are 8 to 1024"),
        (("create", "dave", "--password-stdin"), "", "no password on stdin"),
        (("create", "bad name!"), None, "usernames are"),
        (("disable", "root"), None, "last enabled admin"),
    ]:
        result = users(*args, stdin=stdin)
        assert result.exit_code == 1, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
    assert users("create", "x", "--role", "owner").exit_code == 2  # click refuses the choice
    nowhere = CliRunner().invoke(
        docqa,
        ["--data-dir", str(tmp_path / "empty"), "users", "list"],
        env={"DOCQA_DATABASE_URL": None},
    )
    assert nowhere.exit_code == 1 and "no docqa database" in nowhere.output
    assert not (tmp_path / "empty" / "docqa.db").exists()


def test_a_directory_account_keeps_its_password_in_the_directory(db: Database, users: Any) -> None:
    from qa.accounts.directory_accounts import DirectoryAccounts
    from qa.accounts.ldap_directory import DirectoryAccount

    account = DirectoryAccount("erin", "uid=erin,dc=example,dc=org", "Erin", None, frozenset())
    DirectoryAccounts(db, AuditLog(db)).sign_in(account)
    result = users("reset-password", "erin")
    assert result.exit_code == 1 and "through the directory" in result.output
    assert "ldap" in users("list").output
