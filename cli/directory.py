"""``docqa directory``: check the LDAP settings, re-sync by hand, map directory groups.

docqa directory check                       # connect, StartTLS, bind as the search account
docqa directory sync                        # what the 15-minute re-sync does, now
docqa directory map "cn=finance,ou=groups,dc=example,dc=org" Finance
docqa directory maps
docqa directory unmap 3
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.table import Table

from cli.console import out
from qa.accounts.audit import AuditLog
from qa.accounts.sign_in import SignIn
from qa.accounts.users import AccountService
from qa.errors import ConfigError, NotFound
from qa.settings import Settings
from qa.store.db.engine import Database


@contextmanager
def _sign_in(settings: Settings) -> Iterator[SignIn]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    try:
        sign_in = SignIn.from_settings(settings, AccountService(db), AuditLog(db))
        if sign_in.directory is None or sign_in.directory_accounts is None:
            raise ConfigError("no directory is configured: set DOCQA_LDAP_URL (see the README)")
        yield sign_in
    finally:
        db.dispose()


@click.group("directory")
def directory_command() -> None:
    """Directory (LDAP / Active Directory) sign-in."""


@directory_command.command("check")
@click.pass_obj
def check(settings: Settings) -> None:
    """Connect to the directory and bind as the search account."""
    with _sign_in(settings) as sign_in:
        assert sign_in.directory is not None
        out.print(sign_in.directory.check())


@directory_command.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def sync(settings: Settings, as_json: bool) -> None:
    """Look every directory account up now: disable the ones gone, refresh groups."""
    from qa.accounts.directory_sync import sync_directory

    with _sign_in(settings) as sign_in:
        report = sync_directory(sign_in)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    gone = ", ".join(report.disabled) or "none"
    out.print(
        f"checked {report.checked} directory accounts: {report.updated} updated,"
        f" disabled: {gone} ({report.sessions_ended} sessions ended)"
    )


@directory_command.command("maps")
@click.pass_obj
def maps(settings: Settings) -> None:
    """List which directory groups fill which docqa groups."""
    with _sign_in(settings) as sign_in:
        assert sign_in.directory_accounts is not None
        rows = sign_in.directory_accounts.group_maps()
    table = Table("id", "directory group", "docqa group")
    for map_id, external, _, group in rows:
        table.add_row(str(map_id), external, group)
    out.print(table if rows else "no directory groups are mapped")


@directory_command.command("map")
@click.argument("directory_group")
@click.argument("group_name")
@click.pass_obj
def map_group(settings: Settings, directory_group: str, group_name: str) -> None:
    """Make members of DIRECTORY_GROUP (a DN or a group name) members of GROUP_NAME."""
    with _sign_in(settings) as sign_in:
        assert sign_in.directory_accounts is not None
        group_id = _group_id(sign_in.accounts, group_name)
        map_id = sign_in.directory_accounts.add_group_map(directory_group, group_id)
    out.print(f"mapped (id {map_id}); members follow at their next sign-in or re-sync")


@directory_command.command("unmap")
@click.argument("map_id", type=int)
@click.pass_obj
def unmap(settings: Settings, map_id: int) -> None:
    """Remove the mapping MAP_ID (see ``docqa directory maps``)."""
    with _sign_in(settings) as sign_in:
        assert sign_in.directory_accounts is not None
        sign_in.directory_accounts.remove_group_map(map_id)
    out.print(f"mapping {map_id} removed")


def _group_id(accounts: AccountService, name: str) -> int:
    for group, _ in accounts.list_groups():
        if group.name.lower() == name.strip().lower():
            return group.id
    raise NotFound(f"no docqa group named {name!r} (create it under Admin > Groups)")
