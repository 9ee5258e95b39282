"""``docqa users``: accounts from the command line, for when nobody can sign in as admin.

docqa users list
docqa users create alice --role admin            # a generated password, printed once
printf '%s\\n' "$PW" | docqa users reset-password alice --password-stdin
docqa users disable bob                          # and enable

Every change is audited like the same change in the admin console ("via": "docqa users"),
and a new password or disabling ends the account's browser sessions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.table import Table

from cli.console import out
from qa.accounts.account_changes import create_and_record, update_and_record
from qa.accounts.audit import AuditLog
from qa.accounts.users import (
    MAX_PASSWORD_CHARS,
    ROLES,
    AccountService,
    UserUpdate,
    random_password,
)
from qa.errors import InvalidInput, NotFound
from qa.settings import Settings
from qa.store.db.engine import Database

VIA = "docqa users"
_GENERATED_CHARS = 20


@contextmanager
def _accounts(settings: Settings) -> Iterator[tuple[AccountService, AuditLog]]:
    if settings.database_url is None and not settings.sqlite_file.is_file():
        # opening it would create an empty database, and change nobody
        raise InvalidInput(f"no docqa database in {settings.data_dir} (is --data-dir right?)")
    db = Database(settings.db_url)
    try:
        yield AccountService(db), AuditLog(db)
    finally:
        db.dispose()


def _user_id(accounts: AccountService, username: str) -> int:
    for user in accounts.list_users():
        if user.username.lower() == username.strip().lower():
            return user.id
    raise NotFound(f"no user named {username!r} (see docqa users list)")


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """The password and whether it was generated (then it is printed once)."""
    if not from_stdin:
        return random_password(_GENERATED_CHARS), True
    line = sys.stdin.readline(MAX_PASSWORD_CHARS + 2)
    password = line.rstrip("\r\n")
    if not password:
        raise InvalidInput("no password on stdin (one line expected)")
    return password, False


def _print_password(username: str, password: str) -> None:
    out.print(
        f"password for {username}: {password}\n  (shown once; they can change it after signing in)"
    )


@click.group("users")
def users_command() -> None:
    """Accounts: list, create, reset a password, disable or enable."""


@users_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_obj
def list_users(settings: Settings, as_json: bool) -> None:
    """Every account with its role, where it signs in and whether it is enabled."""
    with _accounts(settings) as (accounts, _):
        users = accounts.list_users()
    if as_json:
        for u in users:
            row = {
                "username": u.username,
                "role": u.role,
                "source": u.auth_source,
                "disabled": u.disabled,
                "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            }
            click.echo(json.dumps(row))
        return
    table = Table("username", "role", "signs in", "state", "last sign-in")
    for u in users:
        last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
        state = "disabled" if u.disabled else "active"
        table.add_row(u.username, u.role, u.auth_source, state, last)
    out.print(table)


@users_command.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="reader", show_default=True)
@click.option("--display-name", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def create(
    settings: Settings, username: str, role: str, display_name: str | None, password_stdin: bool
) -> None:
    """Create a local account (a generated password is printed once)."""
    password, generated = _new_password(password_stdin)
    with _accounts(settings) as (accounts, audit):
        created = create_and_record(
            accounts, audit, username, password, role, display_name, actor=None, via=VIA
        )
    out.print(f"created {created.username} ({created.role})")
    if generated:
        _print_password(created.username, password)


@users_command.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@click.pass_obj
def reset_password(settings: Settings, username: str, password_stdin: bool) -> None:
    """Give a local account a new password; its browser sessions end."""
    password, generated = _new_password(password_stdin)
    with _accounts(settings) as (accounts, audit):
        user_id = _user_id(accounts, username)
        result = update_and_record(
            accounts,
            audit,
            user_id,
            {"password": password},
            {"password": "reset", "via": VIA},
            actor=None,
        )
    name = result.principal.username
    out.print(f"password of {name} reset; {result.sessions_ended} sessions ended")
    if generated:
        _print_password(name, password)


@users_command.command("disable")
@click.argument("username")
@click.pass_obj
def disable(settings: Settings, username: str) -> None:
    """Disable an account (never the last enabled admin); its sessions end."""
    result = _set_disabled(settings, username, True)
    out.print(f"{result.principal.username} disabled; {result.sessions_ended} sessions ended")


@users_command.command("enable")
@click.argument("username")
@click.pass_obj
def enable(settings: Settings, username: str) -> None:
    """Enable a disabled account again."""
    result = _set_disabled(settings, username, False)
    out.print(f"{result.principal.username} enabled")


def _set_disabled(settings: Settings, username: str, disabled: bool) -> UserUpdate:
    change = {"disabled": disabled}
    with _accounts(settings) as (accounts, audit):
        user_id = _user_id(accounts, username)
        recorded = {**change, "via": VIA}
        return update_and_record(accounts, audit, user_id, change, recorded, actor=None)
