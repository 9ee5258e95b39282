"""Directory sign-in against a real OpenLDAP server (slapd, StartTLS with a CA made here),
on real SQLite and PostgreSQL: accounts created at the first sign-in, groups mapped from
directory groups, removal taking effect at the next sign-in and at the re-sync, and every
way in that must stay shut (wrong password, unknown user, empty password, filter
injection, a dead or silent server, a certificate from the wrong CA)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import main as docqa
from qa.accounts.audit import AuditLog
from qa.accounts.directory_accounts import DirectoryAccounts
from qa.accounts.directory_sync import DirectorySyncLoop, sync_directory
from qa.accounts.ldap_directory import LdapConfig, LdapDirectory, normal_dn
from qa.accounts.sessions import SessionService
from qa.accounts.sign_in import SignIn
from qa.accounts.users import AccountService
from qa.errors import ConfigError, Conflict, InvalidInput, Unauthenticated, Unavailable
from qa.settings import Settings
from qa.store.db.engine import Database
from qa.store.db.models import User
from tests.ldap_server import (
    ADMIN_TWIN,
    ALICE,
    BOB,
    CAROL,
    GROUPS,
    SEARCH_DN,
    LdapServer,
    group_dn,
    new_person,
    other_ca,
)
from tests.qa.conftest import PASSWORD


def config(ldap: LdapServer, urls: tuple[str, ...] | None = None, **changes: object) -> LdapConfig:
    """The test server over StartTLS with 2 s timeouts, with ``changes`` (LdapConfig's
    field names) applied, built from settings like the service builds it."""
    fields = {f"ldap_{key}": value for key, value in changes.items()}
    if urls is not None:
        fields["ldap_url"] = " ".join(urls)
    built = LdapConfig.from_settings(Settings(**ldap.settings(**fields)))  # type: ignore[arg-type]
    assert built is not None
    return built


@pytest.fixture
def directory(ldap: LdapServer) -> LdapDirectory:
    return LdapDirectory(config(ldap))


@pytest.fixture
def sign_in(db: Database, accounts: AccountService, directory: LdapDirectory) -> SignIn:
    return SignIn(accounts, directory, DirectoryAccounts(db, AuditLog(db)))


def member_groups(db: Database, username: str) -> set[str]:
    accounts = AccountService(db)
    user_id = next(u.id for u in accounts.list_users() if u.username == username)
    return {group.name for group, members in accounts.list_groups() if user_id in members}


def map_groups(db: Database, sign_in: SignIn, accounts: AccountService) -> dict[str, int]:
    """Finance <- the finance group by DN; Staff <- "staff" by name; Managers unmapped."""
    ids = {name: accounts.create_group(name).id for name in ("Finance", "Staff", "Managers")}
    assert sign_in.directory_accounts is not None
    sign_in.directory_accounts.add_group_map(group_dn("finance").upper(), ids["Finance"])
    sign_in.directory_accounts.add_group_map("Staff", ids["Staff"])
    return ids


# --- first sign-in and groups -----------------------------------------------------------


def test_first_sign_in_creates_a_directory_account_with_mapped_groups(
    db: Database, sign_in: SignIn, accounts: AccountService
) -> None:
    ids = map_groups(db, sign_in, accounts)
    p = sign_in.authenticate("alice", ALICE.password)
    assert (p.username, p.role, p.display_name) == ("alice", "reader", ALICE.name)
    with db.session() as s:
        user = s.get(User, p.user_id)
        assert user is not None
        assert user.auth_source == "ldap" and user.email == ALICE.mail
        assert user.external_id == ALICE.dn and user.synced_at is not None
    assert member_groups(db, "alice") == {"Finance", "Staff"}
    # A manual member of an unmapped group stays one; of a mapped group, only until the
    # directory is asked again.
    accounts.set_members(ids["Managers"], [p.user_id])
    accounts.set_members(ids["Finance"], [])
    assert sign_in.authenticate("ALICE", ALICE.password).user_id == p.user_id  # any case
    assert member_groups(db, "alice") == {"Finance", "Staff", "Managers"}
    # The directory checks the password: a local password check never lets them in.
    with pytest.raises(Unauthenticated):
        accounts.authenticate("alice", ALICE.password)
    with pytest.raises(InvalidInput, match="through the directory"):
        accounts.update_user(p.user_id, password="a local password now")
    audit = AuditLog(db).list(action="user_create")
    assert [e.target for e in audit] == ["alice"]


def test_groups_found_by_a_group_search_when_the_entry_has_no_memberof(
    db: Database, ldap: LdapServer, accounts: AccountService
) -> None:
    directory = LdapDirectory(config(ldap, group_attr=None, group_base=GROUPS))
    account = directory.authenticate("carol", CAROL.password)
    assert {"managers", normal_dn(group_dn("Managers"))} <= account.groups
    assert "finance" not in account.groups
    # LDAPS (port 636 style) instead of StartTLS works the same
    ldaps = LdapDirectory(config(ldap, urls=(ldap.ldaps_url,), starttls=False))
    assert ldaps.authenticate("bob", BOB.password).dn == BOB.dn


def test_removal_from_a_directory_group_ends_access_at_the_next_sign_in(
    db: Database, ldap: LdapServer, sign_in: SignIn, accounts: AccountService
) -> None:
    map_groups(db, sign_in, accounts)
    dave = new_person(ldap, "finance", "staff")
    sign_in.authenticate(dave.uid, dave.password)
    assert member_groups(db, dave.uid) == {"Finance", "Staff"}
    ldap.remove_member("finance", dave)
    sign_in.authenticate(dave.uid, dave.password)
    assert member_groups(db, dave.uid) == {"Staff"}


def test_the_re_sync_removes_groups_and_disables_people_gone_from_the_directory(
    db: Database, ldap: LdapServer, sign_in: SignIn, accounts: AccountService
) -> None:
    map_groups(db, sign_in, accounts)
    sessions = SessionService(db, lifetime=timedelta(hours=1))
    stays, leaves = new_person(ldap, "finance", "staff"), new_person(ldap, "staff")
    kept = sign_in.authenticate(stays.uid, stays.password)
    gone = sign_in.authenticate(leaves.uid, leaves.password)
    cookie = sessions.start(gone.user_id)
    local = accounts.create_user("localonly", PASSWORD)

    ldap.remove_member("staff", stays)
    ldap.delete(leaves.dn)
    report = sync_directory(sign_in)

    assert report.checked == 2 and report.updated == 1
    assert report.disabled == [leaves.uid] and report.sessions_ended == 1
    assert member_groups(db, stays.uid) == {"Finance"}
    with pytest.raises(Unauthenticated):
        sessions.principal(cookie)  # their browser is signed out at once
    assert accounts.principal(kept.user_id).username == stays.uid
    assert accounts.principal(local.user_id).username == "localonly"  # untouched
    # Back in the directory, they still stay out until an admin enables them here.
    ldap.add_person(leaves)
    with pytest.raises(Unauthenticated):
        sign_in.authenticate(leaves.uid, leaves.password)
    actions = [e.action for e in AuditLog(db).list() if e.target == leaves.uid]
    assert "user_update" in actions and "sessions_ended" in actions


def test_a_re_sync_with_the_directory_down_disables_nobody(
    db: Database, ldap: LdapServer, accounts: AccountService, directory: LdapDirectory
) -> None:
    directory_accounts = DirectoryAccounts(db, AuditLog(db))
    person = new_person(ldap)
    p = SignIn(accounts, directory, directory_accounts).authenticate(person.uid, person.password)
    dead = SignIn(
        accounts, LdapDirectory(config(ldap, urls=(_closed_port_url(),))), directory_accounts
    )
    with pytest.raises(Unavailable):
        sync_directory(dead)
    assert accounts.principal(p.user_id).username == person.uid


def test_the_sync_loop_runs_on_its_interval(
    db: Database, ldap: LdapServer, sign_in: SignIn, accounts: AccountService
) -> None:
    person = new_person(ldap)
    p = sign_in.authenticate(person.uid, person.password)
    ldap.delete(person.dn)
    loop = DirectorySyncLoop(sign_in, interval_s=0.2).start()
    try:
        deadline = time.monotonic() + 20
        while loop.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop()
    assert loop.last is not None and person.uid in loop.last.disabled
    with pytest.raises(Unauthenticated):
        accounts.principal(p.user_id)


# --- local accounts ---------------------------------------------------------------------


def test_local_accounts_keep_working_and_cannot_be_taken_over(
    db: Database, ldap: LdapServer, accounts: AccountService
) -> None:
    # The break-glass admin signs in with the directory down, and a directory entry of
    # the same name neither signs in as it nor replaces it.
    admin = accounts.create_user("admin", PASSWORD, role="admin")
    dead = LdapDirectory(config(ldap, urls=(_closed_port_url(),)))
    offline = SignIn(accounts, dead, DirectoryAccounts(db, AuditLog(db)))
    assert offline.authenticate("admin", PASSWORD).user_id == admin.user_id
    online = SignIn(accounts, LdapDirectory(config(ldap)), DirectoryAccounts(db, AuditLog(db)))
    with pytest.raises(Unauthenticated):
        online.authenticate("admin", ADMIN_TWIN.password)
    assert online.authenticate("Admin", PASSWORD).role == "admin"
    # Someone not yet known, with the directory down, gets the outage, not "wrong password".
    with pytest.raises(Unavailable, match="can't be reached"):
        offline.authenticate("alice", ALICE.password)
    assert offline.authenticate("admin", PASSWORD).user_id == admin.user_id


def test_an_account_disabled_here_stays_disabled(
    db: Database, ldap: LdapServer, sign_in: SignIn, accounts: AccountService
) -> None:
    person = new_person(ldap)
    p = sign_in.authenticate(person.uid, person.password)
    accounts.update_user(p.user_id, disabled=True)
    with pytest.raises(Unauthenticated):
        sign_in.authenticate(person.uid, person.password)


# --- what must stay shut ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "not her password"),
        ("alice", ""),  # an empty password is an anonymous bind, which servers accept
        ("nobody", "whatever-it-is"),
        ("", ALICE.password),
    ],
)
def test_wrong_unknown_and_empty_are_refused_alike(
    directory: LdapDirectory, username: str, password: str
) -> None:
    with pytest.raises(Unauthenticated, match="wrong username or password"):
        directory.authenticate(username, password)


@pytest.mark.parametrize(
    "username", ["*", "al*", "alice)(uid=*", "*)(|(uid=*", "alice\\2a", "alice\x00", "(uid=alice)"]
)
def test_filter_syntax_in_a_username_is_only_ever_a_literal_name(
    db: Database, directory: LdapDirectory, sign_in: SignIn, username: str
) -> None:
    # Unescaped, "al*" would find alice and let her password through under another name.
    with pytest.raises(Unauthenticated):
        directory.authenticate(username, ALICE.password)
    assert directory.lookup(username) is None
    with pytest.raises(Unauthenticated):
        sign_in.authenticate(username, ALICE.password)
    with db.session() as s:
        assert s.scalar(select(User.id).where(User.auth_source == "ldap")) is None


def test_a_dead_or_silent_server_fails_closed_within_the_timeout(ldap: LdapServer) -> None:
    with _silent_server() as silent_url:
        for urls in [(_closed_port_url(),), (silent_url,)]:
            directory = LdapDirectory(config(ldap, urls=urls, timeout_s=1.0))
            started = time.monotonic()
            with pytest.raises(Unavailable, match="can't be reached"):
                directory.authenticate("alice", ALICE.password)
            assert time.monotonic() - started < 8  # connect + read timeouts, not a hang
        # a dead first server fails over to the next
        failover = LdapDirectory(config(ldap, urls=(silent_url, ldap.url), timeout_s=1.0))
        assert failover.authenticate("alice", ALICE.password).dn == ALICE.dn


# When the host name check fails, ldap3 raises after wrapping the socket and before it
# keeps the wrapped one: garbage collection closes it, with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_that_does_not_check_out_fails_closed(ldap: LdapServer, tmp_path: Path) -> None:
    wrong_ca = LdapDirectory(config(ldap, ca_file=other_ca(tmp_path / "other.pem")))
    with pytest.raises(Unavailable):
        wrong_ca.authenticate("alice", ALICE.password)
    # The right CA, but the server reached by a name its certificate does not carry
    # (127.0.0.2 forwarded to the server; the certificate names 127.0.0.1 and localhost).
    with _forwarder("127.0.0.2", ldap.port) as other_name:
        with pytest.raises(Unavailable):
            LdapDirectory(config(ldap, urls=(other_name,))).authenticate("alice", ALICE.password)
        # without StartTLS the same route works, so it is the name check that refused
        plain = LdapDirectory(config(ldap, urls=(other_name,), starttls=False))
        assert plain.authenticate("alice", ALICE.password).dn == ALICE.dn
    bad_search_password = LdapDirectory(config(ldap, bind_password="not the password"))
    with pytest.raises(Unavailable):
        bad_search_password.authenticate("alice", ALICE.password)


def test_settings_build_the_directory_and_refuse_what_cannot_work(
    db: Database, ldap: LdapServer, tmp_path: Path
) -> None:
    accounts, audit = AccountService(db), AuditLog(db)
    local_only = SignIn.from_settings(Settings(data_dir=tmp_path), accounts, audit)
    assert not local_only.has_directory
    settings = Settings(
        data_dir=tmp_path,
        **ldap.settings(ldap_url=f"ldap://127.0.0.1:1, {ldap.url}", ldap_default_role="editor"),  # type: ignore[arg-type]
    )
    sign_in = SignIn.from_settings(settings, accounts, audit)
    assert sign_in.authenticate("bob", BOB.password).role == "editor"
    for bad in (
        {"ldap_url": "http://127.0.0.1"},
        {"ldap_url": ldap.url, "ldap_user_filter": "(uid=bob)"},
        {"ldap_url": ldap.url, "ldap_ca_file": tmp_path / "missing.pem"},
    ):
        with pytest.raises(ConfigError):
            SignIn.from_settings(Settings(data_dir=tmp_path, **bad), accounts, audit)  # type: ignore[arg-type]


def test_group_mappings_are_checked(
    db: Database, sign_in: SignIn, accounts: AccountService
) -> None:
    assert sign_in.directory_accounts is not None
    maps = sign_in.directory_accounts
    group = accounts.create_group("Finance")
    map_id = maps.add_group_map("CN=Finance, OU=Groups,DC=example,DC=org", group.id)
    with pytest.raises(Conflict):
        maps.add_group_map("cn=finance,ou=groups,dc=example,dc=org", group.id)  # same DN
    for bad in ("", "   ", "x" * 1025, "cn=a\nb"):
        with pytest.raises(InvalidInput):
            maps.add_group_map(bad, group.id)
    with pytest.raises(Exception, match="no group"):
        maps.add_group_map("finance", 999_999)
    assert [m[1] for m in maps.group_maps()] == ["cn=finance,ou=groups,dc=example,dc=org"]
    maps.remove_group_map(map_id)
    with pytest.raises(Exception, match="no group mapping"):
        maps.remove_group_map(map_id)
    # Deleting the docqa group deletes its mappings with it.
    maps.add_group_map("finance", group.id)
    accounts.delete_group(group.id)
    assert maps.group_maps() == []


# --- helpers ----------------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ldap://127.0.0.1:{port}"  # nothing listens there any more


# --- the command line -------------------------------------------------------------------


def test_the_cli_checks_maps_and_syncs(ldap: LdapServer, tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        f"DOCQA_{key.upper()}": str(value) for key, value in ldap.settings().items()
    }
    env["DOCQA_DATABASE_URL"] = None

    def run(*args: str, environment: dict[str, str | None] = env) -> Any:
        command = ["--data-dir", str(tmp_path), "directory", *args]
        result = CliRunner().invoke(docqa, command, env=environment)
        assert "Traceback" not in result.output
        return result

    checked = run("check")
    assert checked.exit_code == 0, checked.output
    assert f"bound as {SEARCH_DN}" in checked.output
    db = Database(Settings(data_dir=tmp_path).db_url)
    try:
        accounts = AccountService(db)
        accounts.create_group("Finance")
        assert run("maps").output.strip() == "no directory groups are mapped"
        mapped = run("map", group_dn("finance"), "finance")
        assert mapped.exit_code == 0 and "mapped (id 1)" in mapped.output
        assert "cn=finance,ou=groups" in run("maps").output
        person = new_person(ldap, "finance")
        sign_in = SignIn.from_settings(
            Settings(data_dir=tmp_path, **ldap.settings()),  # type: ignore[arg-type]
            accounts,
            AuditLog(db),
        )
        sign_in.authenticate(person.uid, person.password)
        assert member_groups(db, person.uid) == {"Finance"}
        ldap.delete(person.dn)
        synced = run("sync", "--json")
        assert synced.exit_code == 0, synced.output
        assert json.loads(synced.output)["disabled"] == [person.uid]
        assert "checked 0 directory accounts" in run("sync").output  # nobody enabled is left
    finally:
        db.dispose()
    for args, message in [
        (("map", "cn=x", "No such group"), "no docqa group named 'No such group'"),
        (("map", "", "Finance"), "a directory group is a DN or a group name"),
        (("unmap", "99"), "no group mapping with id 99"),
    ]:
        refused = run(*args)
        assert refused.exit_code == 1 and message in refused.output, refused.output
    assert run("unmap", "1").exit_code == 0
    unconfigured = run("check", environment={"DOCQA_LDAP_URL": None})
    assert unconfigured.exit_code == 1 and "no directory is configured" in unconfigured.output
    dead = run("sync", environment={**env, "DOCQA_LDAP_URL": "ldap://127.0.0.1:9"})
    assert dead.exit_code == 1 and "can't be reached" in dead.output


@contextmanager
def _tcp_server(host: str, handle: Callable[[socket.socket], list[socket.socket]]) -> Iterator[str]:
    """``ldap://host:<free port>``; each accepted connection goes to ``handle``, which
    returns further sockets to close at the end."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(16)
    opened: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                client = listener.accept()[0]
            except OSError:
                return
            opened.append(client)
            opened.extend(handle(client))

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"ldap://{host}:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in opened:
            conn.close()


def _silent_server() -> AbstractContextManager[str]:
    """A server that accepts connections and never says a word: a hung directory."""
    return _tcp_server("127.0.0.1", lambda client: [])


def _forwarder(host: str, port: int) -> AbstractContextManager[str]:
    """A second address for the server: every connection relayed to 127.0.0.1:port."""

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def relay(client: socket.socket) -> list[socket.socket]:
        upstream = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        return [upstream]

    return _tcp_server(host, relay)
