"""Per-collection access: grants to users and groups, roles, and hiding what is not readable."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from qa.accounts.access import READ, WRITE, AccessService, GrantView
from qa.accounts.users import AccountService, Principal
from qa.errors import InvalidInput, NotFound, PermissionDenied
from qa.store.catalog import ensure_collection, get_collection
from qa.store.db.engine import Database
from qa.store.db.models import CollectionGrant, Document
from tests.qa.conftest import PASSWORD


@pytest.fixture
def access(db: Database) -> AccessService:
    return AccessService(db)


def _collections(db: Database, *names: str) -> list[int]:
    with db.session() as s:
        ids = [ensure_collection(s, name).id for name in names]
        s.commit()
    return ids


def _user(accounts: AccountService, name: str, role: str = "reader") -> Principal:
    return accounts.create_user(name, PASSWORD, role)


def _grant_rows(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(CollectionGrant)) or 0)


def test_reader_sees_only_granted_collections(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    hr, eng, legal = _collections(db, "hr", "engineering", "legal")
    with db.session() as s:
        s.add(
            Document(id="d1", collection_id=legal, sha256="a" * 64, original_name="x", size_bytes=1)
        )
        s.commit()
    reader = _user(accounts, "rita")
    assert access.readable_collection_ids(reader) == []
    assert access.visible_collections(reader) == []

    access.grant(legal, READ, user_id=reader.user_id)
    access.grant(hr, WRITE, user_id=reader.user_id)  # write implies read
    assert access.readable_collection_ids(reader) == sorted([hr, legal])
    visible = [(c.name, docs) for c, docs, _chunks in access.visible_collections(reader)]
    assert visible == [("hr", 0), ("legal", 1)]
    access.require_read(reader, hr)
    with pytest.raises(NotFound):
        access.require_read(reader, eng)
    # another reader is unaffected
    assert access.readable_collection_ids(_user(accounts, "sam")) == []


def test_admin_reads_and_writes_everything(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    ids = _collections(db, "b", "a", "c")
    admin = _user(accounts, "root", "admin")
    assert access.readable_collection_ids(admin) == sorted(ids)
    assert access.writable_collection_ids(admin) == sorted(ids)
    assert [c.name for c, _, _ in access.visible_collections(admin)] == ["a", "b", "c"]
    access.require_write(admin, ids[0])
    with pytest.raises(NotFound):
        access.require_read(admin, max(ids) + 100)


def test_group_grant_and_leaving_the_group_revokes_at_once(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    (coll,) = _collections(db, "finance")
    member = _user(accounts, "gus")
    group = accounts.create_group("finance team")
    access.grant(coll, READ, group_id=group.id)
    assert access.readable_collection_ids(member) == []  # not a member yet
    accounts.set_members(group.id, [member.user_id])
    assert access.readable_collection_ids(member) == [coll]
    access.require_read(member, coll)

    accounts.set_members(group.id, [])  # same AccessService, no cache to go stale
    assert access.readable_collection_ids(member) == []
    with pytest.raises(NotFound):
        access.require_read(member, coll)


def test_revoke_takes_effect_at_once(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    a, b = _collections(db, "a", "b")
    user = _user(accounts, "una", "editor")
    access.grant(a, WRITE, user_id=user.user_id)
    access.grant(b, READ, user_id=user.user_id)
    assert access.writable_collection_ids(user) == [a]
    access.revoke(a, user_id=user.user_id)
    assert access.readable_collection_ids(user) == [b]
    assert access.writable_collection_ids(user) == []
    with pytest.raises(NotFound):
        access.require_write(user, a)
    access.revoke(a, user_id=user.user_id)  # nothing left to revoke: not an error
    assert _grant_rows(db) == 1


def test_user_and_group_grants_combine_and_are_revoked_separately(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    (coll,) = _collections(db, "shared")
    user = _user(accounts, "vic", "editor")
    group = accounts.create_group("writers")
    accounts.set_members(group.id, [user.user_id])
    access.grant(coll, READ, user_id=user.user_id)
    access.grant(coll, WRITE, group_id=group.id)
    assert access.writable_collection_ids(user) == [coll]  # the group's write counts
    access.revoke(coll, group_id=group.id)
    assert access.writable_collection_ids(user) == []
    assert access.readable_collection_ids(user) == [coll]  # the user's own read remains


def test_editor_and_reader_write_rules(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    read_only, writable = _collections(db, "read-only", "writable")
    editor = _user(accounts, "ed", "editor")
    reader = _user(accounts, "rae", "reader")
    for who in (editor, reader):
        access.grant(read_only, READ, user_id=who.user_id)
        access.grant(writable, WRITE, user_id=who.user_id)

    assert access.writable_collection_ids(editor) == [writable]
    access.require_write(editor, writable)
    with pytest.raises(PermissionDenied):
        access.require_write(editor, read_only)

    # a reader's write grant lets them read, never write
    assert access.readable_collection_ids(reader) == sorted([read_only, writable])
    assert access.writable_collection_ids(reader) == []
    for coll in (read_only, writable):
        with pytest.raises(PermissionDenied):
            access.require_write(reader, coll)


def test_require_read_never_reveals_existence(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    (secret,) = _collections(db, "secret")
    editor = _user(accounts, "eve", "editor")
    missing = secret + 1000
    messages = []
    for coll in (secret, missing):
        for check in (access.require_read, access.require_write):
            with pytest.raises(NotFound) as err:
                check(editor, coll)
            messages.append(str(err.value).replace(str(coll), "<id>"))
    assert set(messages) == {"no collection with id <id>"}


def test_grant_upserts_one_row_per_principal(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    (coll,) = _collections(db, "policies")
    bob = _user(accounts, "Bob", "editor")
    amy = _user(accounts, "amy", "editor")
    group = accounts.create_group("Auditors")
    access.grant(coll, READ, user_id=bob.user_id)
    access.grant(coll, WRITE, user_id=bob.user_id)
    assert _grant_rows(db) == 1
    assert access.writable_collection_ids(bob) == [coll]
    access.grant(coll, READ, user_id=bob.user_id)  # granting read again downgrades
    assert _grant_rows(db) == 1
    assert access.writable_collection_ids(bob) == []

    access.grant(coll, WRITE, group_id=group.id)
    access.grant(coll, READ, user_id=amy.user_id)
    assert access.grants(coll) == [
        GrantView(amy.user_id, "amy", None, None, READ),
        GrantView(bob.user_id, "Bob", None, None, READ),
        GrantView(None, None, group.id, "Auditors", WRITE),
    ]


def test_grant_validation(db: Database, accounts: AccountService, access: AccessService) -> None:
    (coll,) = _collections(db, "c")
    user = _user(accounts, "wes")
    group = accounts.create_group("g")
    with pytest.raises(InvalidInput):
        access.grant(coll, READ)
    with pytest.raises(InvalidInput):
        access.grant(coll, READ, user_id=user.user_id, group_id=group.id)
    with pytest.raises(InvalidInput):
        access.grant(coll, "admin", user_id=user.user_id)
    with pytest.raises(InvalidInput):
        access.revoke(coll)
    with pytest.raises(NotFound, match="collection"):
        access.grant(coll + 1000, READ, user_id=user.user_id)
    with pytest.raises(NotFound, match="user"):
        access.grant(coll, READ, user_id=user.user_id + 1000)
    with pytest.raises(NotFound, match="group"):
        access.grant(coll, READ, group_id=group.id + 1000)
    with pytest.raises(NotFound):
        access.grants(coll + 1000)
    assert _grant_rows(db) == 0


def test_database_requires_exactly_one_principal(db: Database, accounts: AccountService) -> None:
    (coll,) = _collections(db, "c")
    user = _user(accounts, "xia")
    group = accounts.create_group("g")
    for user_id, group_id in ((None, None), (user.user_id, group.id)):
        with db.session() as s:
            s.add(
                CollectionGrant(
                    collection_id=coll, user_id=user_id, group_id=group_id, permission=READ
                )
            )
            with pytest.raises(IntegrityError):
                s.commit()


def test_deleting_a_collection_removes_its_grants(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    keep, doomed = _collections(db, "keep", "doomed")
    user = _user(accounts, "yan")
    group = accounts.create_group("g")
    access.grant(doomed, READ, user_id=user.user_id)
    access.grant(doomed, WRITE, group_id=group.id)
    access.grant(keep, READ, user_id=user.user_id)
    with db.session() as s:
        s.delete(get_collection(s, "doomed"))
        s.commit()
    assert _grant_rows(db) == 1
    assert access.readable_collection_ids(user) == [keep]
    with pytest.raises(NotFound):
        access.grants(doomed)


def test_deleting_a_user_or_group_removes_their_grants(
    db: Database, accounts: AccountService, access: AccessService
) -> None:
    (coll,) = _collections(db, "c")
    user = _user(accounts, "zed")
    group = accounts.create_group("g")
    access.grant(coll, READ, user_id=user.user_id)
    access.grant(coll, READ, group_id=group.id)
    accounts.delete_group(group.id)
    assert [g.user_id for g in access.grants(coll)] == [user.user_id]
    accounts.delete_user(user.user_id)
    assert access.grants(coll) == []
