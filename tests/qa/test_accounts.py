"""Users, passwords, groups, API tokens and the 0002 schema, on real SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import threading
import warnings
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from qa.accounts.users import (
    FIRST_ADMIN_USERNAME,
    AccountService,
    Principal,
    hash_password,
    verify_password,
)
from qa.answering.chats import ChatService
from qa.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from qa.store.db.engine import MIGRATIONS_DIR, Database
from qa.store.db.models import ApiToken, Base, Chat, GroupMember, User, utcnow
from tests.qa.conftest import PASSWORD


def _count(db: Database, model: type[Base]) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- schema -------------------------------------------------------------------------------


def _alembic(db: Database, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def test_migration_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn, warnings.catch_warnings():
        # SQLite cannot reflect the lower(...) unique indexes; PostgreSQL compares them.
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migration_downgrades_and_upgrades_again(db: Database) -> None:
    new_tables = {"users", "groups", "group_members", "collection_grants", "api_tokens"}
    new_tables |= {"chats", "chat_messages", "audit_events", "app_config"}
    assert new_tables <= set(inspect(db.engine).get_table_names())
    _alembic(db, "downgrade", "0001")
    assert not new_tables & set(inspect(db.engine).get_table_names())
    _alembic(db, "upgrade", "head")
    assert new_tables <= set(inspect(db.engine).get_table_names())


def test_database_refuses_usernames_differing_only_in_case(db: Database) -> None:
    with db.session() as s:
        s.add(User(username="Alice", password_hash="x", role="reader"))
        s.commit()
        s.add(User(username="ALICE", password_hash="x", role="reader"))
        with pytest.raises(IntegrityError):
            s.commit()


# --- password hashing ---------------------------------------------------------------------


def test_password_hash_round_trip_and_format() -> None:
    stored = hash_password(PASSWORD)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    assert not verify_password("", stored)
    assert hash_password(PASSWORD) != stored  # a fresh salt every time
    assert PASSWORD not in stored


@pytest.mark.parametrize("password", ["пароль-ключ", "密码密码密码密码", "bad\udc80surrogate"])
def test_any_text_hashes_and_verifies(password: str) -> None:
    assert verify_password(password, hash_password(password))
    assert not verify_password(password[:-1], hash_password(password))


def _tampered(stored: str) -> str:
    head, digest = stored.rsplit("$", 1)
    raw = bytearray(base64.b64decode(digest))
    raw[0] ^= 1
    return f"{head}${base64.b64encode(bytes(raw)).decode()}"


@pytest.mark.parametrize(
    "make_stored",
    [
        lambda good: "",
        lambda good: "not a hash",
        lambda good: good.replace("scrypt$", "bcrypt$", 1),
        lambda good: good.replace("$16384$", "$16383$", 1),  # N not a power of two
        lambda good: good.replace("$16384$", "$1073741824$", 1),  # absurd memory
        lambda good: good.replace("$8$", "$x$", 1),
        lambda good: good[:-4] + "!!!!",  # not base64
        lambda good: good.rsplit("$", 1)[0],  # a part missing
        lambda good: good + "$extra",
        lambda good: good.rsplit("$", 1)[0] + "$AAAA",  # digest too short
        _tampered,
    ],
)
def test_malformed_or_tampered_hash_is_a_mismatch_not_an_error(make_stored: Any) -> None:
    good = hash_password(PASSWORD)
    assert verify_password(PASSWORD, good)
    assert verify_password(PASSWORD, make_stored(good)) is False


# --- users --------------------------------------------------------------------------------


def test_create_and_authenticate(db: Database, accounts: AccountService) -> None:
    created = accounts.create_user("alice", PASSWORD, "editor", display_name="  Alice A.  ")
    assert created == Principal(created.user_id, "alice", "editor", "Alice A.")
    assert created.can_manage_collections and not created.is_admin
    assert accounts.get_user(created.user_id).last_login_at is None

    signed_in = accounts.authenticate("ALICE", PASSWORD)  # usernames ignore letter case
    assert signed_in == created
    assert accounts.get_user(created.user_id).last_login_at is not None
    with db.session() as s:
        row = s.get(User, created.user_id)
        assert row is not None and PASSWORD not in row.password_hash
        assert verify_password(PASSWORD, row.password_hash)


def test_role_properties() -> None:
    admin, editor, reader = (Principal(1, "x", role) for role in ("admin", "editor", "reader"))
    assert admin.is_admin and admin.can_manage_collections
    assert not editor.is_admin and editor.can_manage_collections
    assert not reader.is_admin and not reader.can_manage_collections


def test_sign_in_failures_look_alike(accounts: AccountService) -> None:
    uid = accounts.create_user("bob", PASSWORD).user_id
    accounts.create_user("carol", PASSWORD)
    accounts.update_user(accounts.authenticate("carol", PASSWORD).user_id, disabled=True)
    messages = set()
    for username, password in [
        ("bob", "wrong password"),
        ("nobody", PASSWORD),
        ("carol", PASSWORD),  # disabled, even with the right password
        ("", PASSWORD),
        ("bad name!", PASSWORD),
    ]:
        with pytest.raises(Unauthenticated) as err:
            accounts.authenticate(username, password)
        messages.add(str(err.value))
    assert messages == {"wrong username or password"}
    assert accounts.get_user(uid).last_login_at is None


@pytest.mark.parametrize(
    ("username", "password", "role"),
    [
        ("", PASSWORD, "reader"),
        ("-alice", PASSWORD, "reader"),
        ("al ice", PASSWORD, "reader"),
        ("a" * 65, PASSWORD, "reader"),
        ("al\nice", PASSWORD, "reader"),
        ("alice", "short", "reader"),
        ("alice", "x" * 1025, "reader"),
        ("alice", PASSWORD, "owner"),
    ],
)
def test_create_user_validates(
    accounts: AccountService, username: str, password: str, role: str
) -> None:
    with pytest.raises(InvalidInput):
        accounts.create_user(username, password, role)
    assert accounts.list_users() == []


def test_username_limits_accepted(accounts: AccountService) -> None:
    for name in ("a", "a" * 64, "j.doe@example.com", "x_y-z"):
        assert accounts.create_user(name, "p" * 8).username == name
    assert accounts.create_user(" padded ", "p" * 1024).username == "padded"


def test_duplicate_username_is_a_conflict_in_any_case(accounts: AccountService) -> None:
    accounts.create_user("Alice", PASSWORD)
    with pytest.raises(Conflict):
        accounts.create_user("alice", PASSWORD)
    assert [u.username for u in accounts.list_users()] == ["Alice"]


def test_list_and_get_users(accounts: AccountService) -> None:
    for name in ("bob", "Alice", "carol"):
        accounts.create_user(name, PASSWORD)
    assert [u.username for u in accounts.list_users()] == ["Alice", "bob", "carol"]
    with pytest.raises(NotFound):
        accounts.get_user(999_999)


def test_principal_follows_the_database(accounts: AccountService) -> None:
    accounts.create_user("root", PASSWORD, "admin")
    uid = accounts.create_user("dave", PASSWORD, "reader").user_id
    assert accounts.principal(uid).role == "reader"
    accounts.update_user(uid, role="editor")
    assert accounts.principal(uid).role == "editor"
    accounts.update_user(uid, disabled=True)
    with pytest.raises(Unauthenticated):
        accounts.principal(uid)
    accounts.update_user(uid, disabled=False)
    assert accounts.principal(uid).username == "dave"
    accounts.delete_user(uid)
    with pytest.raises(Unauthenticated):
        accounts.principal(uid)


def test_update_user_fields(accounts: AccountService) -> None:
    uid = accounts.create_user("erin", PASSWORD, display_name="Erin").user_id
    assert accounts.update_user(uid, display_name="Erin E.").principal.display_name == "Erin E."
    assert accounts.update_user(uid, role="editor").principal.display_name == "Erin E."  # kept
    assert accounts.update_user(uid, display_name="").principal.display_name is None
    accounts.update_user(uid, password="a new password")
    with pytest.raises(Unauthenticated):
        accounts.authenticate("erin", PASSWORD)
    assert accounts.authenticate("erin", "a new password").user_id == uid
    bad_changes: list[dict[str, Any]] = [
        {"role": "owner"},
        {"password": "short"},
        {"display_name": "x" * 201},
        {"disabled": "yes"},
    ]
    for bad in bad_changes:
        with pytest.raises(InvalidInput):
            accounts.update_user(uid, **bad)
    with pytest.raises(NotFound):
        accounts.update_user(999_999, role="reader")
    assert accounts.principal(uid).role == "editor"


def test_last_enabled_admin_is_protected(accounts: AccountService) -> None:
    root = accounts.create_user("root", PASSWORD, "admin").user_id
    spare = accounts.create_user("spare", PASSWORD, "admin").user_id
    accounts.update_user(spare, disabled=True)  # a disabled admin does not count
    for change in ({"role": "editor"}, {"disabled": True}):
        with pytest.raises(InvalidInput, match="last enabled admin"):
            accounts.update_user(root, **change)
    with pytest.raises(InvalidInput, match="last enabled admin"):
        accounts.delete_user(root)
    assert accounts.principal(root).is_admin
    # harmless changes to the last admin still work
    assert (
        accounts.update_user(root, role="admin", display_name="Root").principal.display_name
        == "Root"
    )

    accounts.update_user(spare, disabled=False)
    accounts.update_user(root, role="reader")  # now allowed: spare is an enabled admin
    with pytest.raises(InvalidInput):
        accounts.delete_user(spare)
    accounts.update_user(root, role="admin")
    accounts.delete_user(spare)
    assert [u.username for u in accounts.list_users()] == ["root"]


def test_non_admins_are_deleted_freely_with_their_data(
    db: Database, accounts: AccountService
) -> None:
    accounts.create_user("root", PASSWORD, "admin")
    uid = accounts.create_user("frank", PASSWORD).user_id
    group = accounts.create_group("staff")
    accounts.set_members(group.id, [uid])
    accounts.create_token(uid, "laptop")
    ChatService(db).create(uid)
    accounts.delete_user(uid)
    assert (_count(db, GroupMember), _count(db, ApiToken), _count(db, Chat)) == (0, 0, 0)
    with pytest.raises(NotFound):
        accounts.delete_user(uid)


# --- preferences --------------------------------------------------------------------------


def test_preferences_merge_and_reset(accounts: AccountService) -> None:
    uid = accounts.create_user("gina", PASSWORD).user_id
    assert accounts.preferences(uid) == {}
    got = accounts.set_preferences(uid, {"temperature": 1, "theme": "dark", "max_tokens": 512})
    assert got == {"temperature": 1.0, "theme": "dark", "max_tokens": 512}
    assert isinstance(got["temperature"], float)
    got = accounts.set_preferences(uid, {"top_p": 0.9, "system_prompt": "Answer in French."})
    assert got == {
        "temperature": 1.0,
        "theme": "dark",
        "max_tokens": 512,
        "top_p": 0.9,
        "system_prompt": "Answer in French.",
    }
    assert accounts.preferences(uid) == got
    # "" or None for the prompt means the default; None resets any key
    got = accounts.set_preferences(uid, {"system_prompt": "", "theme": None})
    assert got == {"temperature": 1.0, "max_tokens": 512, "top_p": 0.9}
    assert accounts.set_preferences(uid, {"system_prompt": None}) == got
    limits = {"temperature": 0, "top_p": 1, "max_tokens": 8192, "system_prompt": "x" * 8000}
    assert accounts.set_preferences(uid, limits)["max_tokens"] == 8192
    assert accounts.set_preferences(uid, {"temperature": 2.0})["temperature"] == 2.0
    with pytest.raises(NotFound):
        accounts.preferences(999_999)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("system_prompt", 42),
        ("system_prompt", "x" * 8001),
        ("temperature", -0.1),
        ("temperature", 2.01),
        ("temperature", "0.5"),
        ("temperature", True),
        ("temperature", float("nan")),
        ("top_p", 0),
        ("top_p", 1.01),
        ("top_p", False),
        ("max_tokens", 0),
        ("max_tokens", 8193),
        ("max_tokens", 1.0),
        ("max_tokens", True),
        ("theme", "blue"),
        ("theme", 1),
        ("colour", "red"),
    ],
)
def test_bad_preference_is_refused_naming_the_field(
    accounts: AccountService, field: str, value: Any
) -> None:
    uid = accounts.create_user("hank", PASSWORD).user_id
    accounts.set_preferences(uid, {"theme": "light"})
    with pytest.raises(InvalidInput, match=field):
        # a valid key next to the bad one is not applied either
        accounts.set_preferences(uid, {"temperature": 0.3, field: value})
    assert accounts.preferences(uid) == {"theme": "light"}


# --- groups -------------------------------------------------------------------------------


def test_groups_lifecycle(db: Database, accounts: AccountService) -> None:
    a = accounts.create_user("ann", PASSWORD).user_id
    b = accounts.create_user("ben", PASSWORD).user_id
    sales = accounts.create_group("  Sales  ")
    assert sales.name == "Sales"
    legal = accounts.create_group("legal")
    for dup in ("sales", "SALES"):
        with pytest.raises(Conflict):
            accounts.create_group(dup)
    for bad in ("", "   ", "x" * 101, "tab\there"):
        with pytest.raises(InvalidInput):
            accounts.create_group(bad)

    accounts.set_members(sales.id, [b, a, a])
    accounts.set_members(legal.id, [a])
    assert [(g.name, members) for g, members in accounts.list_groups()] == [
        ("legal", [a]),
        ("Sales", sorted([a, b])),
    ]
    assert accounts.group_ids_of(a) == sorted([sales.id, legal.id])
    accounts.set_members(sales.id, [b])  # replaces, not adds
    assert accounts.group_ids_of(a) == [legal.id]
    assert accounts.group_ids_of(b) == [sales.id]

    with pytest.raises(Conflict):
        accounts.rename_group(legal.id, "SALES")
    assert accounts.rename_group(sales.id, "sales").name == "sales"  # own name, new case
    assert accounts.rename_group(legal.id, "Legal team").name == "Legal team"
    accounts.delete_group(legal.id)
    assert [g.name for g, _ in accounts.list_groups()] == ["sales"]
    assert accounts.group_ids_of(a) == []
    assert _count(db, GroupMember) == 1


def test_group_errors(accounts: AccountService) -> None:
    a = accounts.create_user("ann", PASSWORD).user_id
    group = accounts.create_group("ops")
    with pytest.raises(NotFound, match="999999"):
        accounts.set_members(group.id, [a, 999_999])
    with pytest.raises(InvalidInput):
        accounts.set_members(group.id, [True])  # type: ignore[list-item]
    assert accounts.list_groups()[0][1] == []  # nothing half-applied
    for call in (
        lambda: accounts.set_members(999_999, [a]),
        lambda: accounts.rename_group(999_999, "x"),
        lambda: accounts.delete_group(999_999),
    ):
        with pytest.raises(NotFound):
            call()


# --- API tokens ---------------------------------------------------------------------------


def test_token_is_shown_once_and_only_its_hash_is_stored(
    db: Database, accounts: AccountService
) -> None:
    uid = accounts.create_user("ivy", PASSWORD).user_id
    plaintext, token = accounts.create_token(uid, " CI pipeline ")
    assert plaintext.startswith("dq_") and len(plaintext) > 40
    assert token.name == "CI pipeline"
    assert token.prefix == plaintext[: len(token.prefix)] and 4 < len(token.prefix) <= 16
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM api_tokens")).one()
    stored = " ".join(str(v) for v in row)
    assert plaintext not in stored and plaintext[len(token.prefix) :] not in stored

    assert accounts.authenticate_token(plaintext) == accounts.principal(uid)
    second, _ = accounts.create_token(uid, "other")
    assert second != plaintext


def test_token_rejections(accounts: AccountService) -> None:
    accounts.create_user("root", PASSWORD, "admin")
    uid = accounts.create_user("jack", PASSWORD).user_id
    plaintext, token = accounts.create_token(uid, "script")
    for bad in ("", "dq_nope", plaintext + "x", plaintext[:-1]):
        with pytest.raises(Unauthenticated):
            accounts.authenticate_token(bad)

    accounts.update_user(uid, disabled=True)
    with pytest.raises(Unauthenticated):
        accounts.authenticate_token(plaintext)
    accounts.update_user(uid, disabled=False)
    assert accounts.authenticate_token(plaintext).user_id == uid

    accounts.revoke_token(token.id)
    with pytest.raises(Unauthenticated):
        accounts.authenticate_token(plaintext)
    revoked_at = accounts.list_tokens(uid)[0].revoked_at
    assert revoked_at is not None
    accounts.revoke_token(token.id)  # idempotent, keeps the first time
    assert accounts.list_tokens(uid)[0].revoked_at == revoked_at

    accounts.delete_user(uid)
    with pytest.raises(Unauthenticated):
        accounts.authenticate_token(plaintext)


def test_revoke_someone_elses_token_is_not_found(accounts: AccountService) -> None:
    owner = accounts.create_user("kim", PASSWORD).user_id
    other = accounts.create_user("lou", PASSWORD).user_id
    plaintext, token = accounts.create_token(owner, "mine")
    with pytest.raises(NotFound):
        accounts.revoke_token(token.id, owner_id=other)
    assert accounts.authenticate_token(plaintext).user_id == owner
    with pytest.raises(NotFound):
        accounts.revoke_token(999_999)
    accounts.revoke_token(token.id, owner_id=owner)
    with pytest.raises(Unauthenticated):
        accounts.authenticate_token(plaintext)


def test_list_tokens(accounts: AccountService) -> None:
    a = accounts.create_user("max", PASSWORD).user_id
    b = accounts.create_user("ned", PASSWORD).user_id
    _, t1 = accounts.create_token(a, "one")
    _, t2 = accounts.create_token(b, "two")
    _, t3 = accounts.create_token(a, "three")
    assert [t.id for t in accounts.list_tokens(a)] == [t3.id, t1.id]
    assert [t.id for t in accounts.list_tokens()] == [t3.id, t2.id, t1.id]
    assert accounts.list_tokens(999_999) == []
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(InvalidInput):
            accounts.create_token(a, bad)
    with pytest.raises(NotFound):
        accounts.create_token(999_999, "ghost")


def test_token_last_used_is_written_at_most_once_a_minute(
    db: Database, accounts: AccountService
) -> None:
    uid = accounts.create_user("olga", PASSWORD).user_id
    plaintext, token = accounts.create_token(uid, "t")
    assert token.last_used_at is None
    accounts.authenticate_token(plaintext)
    first = accounts.list_tokens(uid)[0].last_used_at
    assert first is not None
    accounts.authenticate_token(plaintext)
    assert accounts.list_tokens(uid)[0].last_used_at == first  # within the minute: no write

    long_ago = utcnow() - timedelta(minutes=2)
    with db.session() as s:
        row = s.get(ApiToken, token.id)
        assert row is not None
        row.last_used_at = long_ago
        s.commit()
    accounts.authenticate_token(plaintext)
    latest = accounts.list_tokens(uid)[0].last_used_at
    assert latest is not None and latest.replace(tzinfo=None) > long_ago.replace(tzinfo=None)


# --- first admin --------------------------------------------------------------------------


def test_first_admin_is_created_once(accounts: AccountService) -> None:
    creds = accounts.ensure_first_admin()
    assert creds is not None
    username, password = creds
    assert username == FIRST_ADMIN_USERNAME and len(password) == 20
    assert accounts.authenticate(username, password).is_admin
    assert accounts.ensure_first_admin() is None
    assert len(accounts.list_users()) == 1


def test_no_first_admin_when_any_user_exists(accounts: AccountService) -> None:
    accounts.create_user("someone", PASSWORD)
    assert accounts.ensure_first_admin() is None
    assert [u.username for u in accounts.list_users()] == ["someone"]


def test_first_admin_race_between_processes(db_url: str, db: Database) -> None:
    workers = 4
    barrier = threading.Barrier(workers, timeout=60)
    results: list[tuple[str, str] | None] = []
    errors: list[BaseException] = []

    def start() -> None:
        # Like a separate process: its own engine and pool. (Alembic's context is not
        # thread-safe, and the `db` fixture has migrated already.)
        own = Database(db_url, run_migrations=False)
        try:
            service = AccountService(own)
            barrier.wait()
            results.append(service.ensure_first_admin())
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    winners = [r for r in results if r is not None]
    assert len(results) == workers and len(winners) == 1
    assert AccountService(db).authenticate(*winners[0]).is_admin
