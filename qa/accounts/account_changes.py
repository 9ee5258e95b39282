"""Account changes as the admin console and ``docqa users`` make them: the change, then its
audit entries (and the entry for the sessions the change ended), in one place."""

from __future__ import annotations

from typing import Any

from qa.accounts.audit import SESSIONS_ENDED, USER_CREATE, USER_UPDATE, AuditLog
from qa.accounts.users import AccountService, Principal, UserUpdate


def create_and_record(
    accounts: AccountService,
    audit: AuditLog,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    *,
    actor: Principal | None,
    ip: str | None = None,
    via: str | None = None,
) -> Principal:
    created = accounts.create_user(username, password, role, display_name)
    details: dict[str, Any] = {"user_id": created.user_id, "role": created.role}
    if via:
        details["via"] = via
    audit.record(USER_CREATE, actor=actor, target=created.username, details=details, ip=ip)
    return created


def update_and_record(
    accounts: AccountService,
    audit: AuditLog,
    user_id: int,
    changes: dict[str, Any],
    recorded: dict[str, Any],
    *,
    actor: Principal | None,
    ip: str | None = None,
) -> UserUpdate:
    """Apply ``changes`` (qa refuses to lose the last admin) and audit ``recorded``, and the
    end of the user's sessions when the change ended them."""
    result = accounts.update_user(user_id, **changes)
    updated = result.principal
    details = {"user_id": user_id, **recorded}
    audit.record(USER_UPDATE, actor=actor, target=updated.username, details=details, ip=ip)
    if result.session_reasons:
        ended = {"user_id": user_id, "reason": list(result.session_reasons)}
        ended["sessions"] = result.sessions_ended
        audit.record(SESSIONS_ENDED, actor=actor, target=updated.username, details=ended, ip=ip)
    return result
