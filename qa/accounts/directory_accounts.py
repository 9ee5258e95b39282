"""Local accounts that a directory owns: created at the first sign-in, kept in step after.

A directory account has no local password (its ``password_hash`` is a marker no password
verifies against), its display name and email come from the directory, and its membership
of every docqa group that has a mapping from the directory follows the directory's groups
(``DirectoryGroupMap``). Groups without a mapping, the role and collection grants stay
where admins set them.

The re-sync (``sync``) looks every enabled directory account up again: one gone from the
directory, or marked disabled there, is disabled here and its browser sessions end; the
others get their groups, name and email refreshed. A directory that cannot answer stops
the sync before anything changes: a network outage must not lock everyone out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qa.accounts.audit import (
    DIRECTORY_MAP,
    DIRECTORY_SYNC,
    SESSIONS_ENDED,
    USER_CREATE,
    USER_UPDATE,
    AuditLog,
)
from qa.accounts.ldap_directory import SOURCE, DirectoryAccount, LdapDirectory, normal_dn
from qa.accounts.users import (
    ENDED_BY_DISABLE,
    READER,
    Principal,
    check_username,
    principal_of,
)
from qa.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from qa.messages import N_
from qa.store.db.engine import Database
from qa.store.db.models import DirectoryGroupMap, Group, GroupMember, User, utcnow
from qa.store.user_sessions import delete_user_sessions

log = logging.getLogger(__name__)

#: what a directory account's password_hash holds: not a scrypt string, so
#: ``verify_password`` refuses every password against it
NO_LOCAL_PASSWORD = "!directory"
MAX_EXTERNAL_GROUP_CHARS = 1024
_TAKEN_BY_LOCAL = N_("wrong username or password")


@dataclass
class SyncReport:
    """What one re-sync did (``docqa directory sync`` prints it, the audit log keeps it)."""

    checked: int = 0
    updated: int = 0
    disabled: list[str] = field(default_factory=list)
    sessions_ended: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "updated": self.updated,
            "disabled": list(self.disabled),
            "sessions_ended": self.sessions_ended,
        }


class DirectoryAccounts:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        default_role: str = READER,
        source: str = SOURCE,
        stable_ids: bool = False,
    ) -> None:
        self.db = db
        self.audit = audit
        self.default_role = default_role
        self.source = source
        #: the external id never changes for a person (an OIDC issuer + sub, unlike an
        #: LDAP DN that moves with the entry): another id under a known username is
        #: another person, who must not inherit the account
        self.stable_ids = stable_ids

    # --- sign-in --------------------------------------------------------------------

    def sign_in(self, account: DirectoryAccount) -> Principal:
        """The local account of someone the directory just vouched for, created or
        brought up to date. A local account of the same name is never taken over, and an
        account disabled here stays disabled: both sign-ins fail like a wrong password."""
        username = check_username(account.username)
        with self.db.session() as session:
            user = _find(session, username)
            created = user is None
            if user is None:
                user = User(
                    username=username,
                    password_hash=NO_LOCAL_PASSWORD,
                    role=self.default_role,
                    disabled=False,
                    preferences={},
                    auth_source=self.source,
                )
                session.add(user)
            elif user.auth_source != self.source or user.disabled:
                raise Unauthenticated(_TAKEN_BY_LOCAL)
            elif self.stable_ids and user.external_id not in (None, account.dn):
                log.warning(
                    "%s sign-in of %r refused: the account belongs to %r, not %r",
                    self.source,
                    username,
                    user.external_id,
                    account.dn,
                )
                raise Unauthenticated(_TAKEN_BY_LOCAL)
            _refresh(session, user, account, self.source)
            user.last_login_at = utcnow()
            try:
                session.commit()
            except IntegrityError as exc:  # the same person's first sign-in, twice at once
                session.rollback()
                raise Unauthenticated(N_("please sign in again")) from exc
            principal = principal_of(user)
        if created:
            self.audit.record(
                USER_CREATE,
                actor=principal,
                target=username,
                details={"source": self.source, "role": principal.role},
            )
        return principal

    # --- re-sync --------------------------------------------------------------------

    def sync(self, directory: LdapDirectory) -> SyncReport:
        """Look every enabled directory account up again (see the module docstring).

        Unavailable from the directory propagates before anything is written for the
        account it failed on; accounts already handled keep their (correct) update."""
        report = SyncReport()
        with self.db.session() as session:
            names = list(
                session.scalars(
                    select(User.username).where(
                        User.auth_source == self.source, User.disabled.is_(False)
                    )
                )
            )
        # One connection for the whole run; opening it fails before anything is written
        # when the directory cannot answer, even with nobody to check.
        for username, account in directory.lookups(names):
            report.checked += 1
            with self.db.session() as session:
                user = _find(session, username)
                if user is None or user.disabled or user.auth_source != self.source:
                    continue  # changed while we asked the directory
                if account is None or account.disabled:
                    user.disabled = True
                    ended = delete_user_sessions(session, user.id)
                    session.commit()
                    report.disabled.append(username)
                    report.sessions_ended += ended
                    why = "gone" if account is None else "disabled"
                    self._record_disabled(username, ended, why)
                    continue
                if _refresh(session, user, account, self.source):
                    report.updated += 1
                session.commit()
        log.info("directory sync: %s", report.as_dict())
        if report.updated or report.disabled:
            self.audit.record(DIRECTORY_SYNC, details={"source": self.source, **report.as_dict()})
        return report

    def _record_disabled(self, username: str, ended: int, why: str) -> None:
        details = {"disabled": True, "by": "directory sync", "directory": why}
        self.audit.record(USER_UPDATE, target=username, details=details)
        if ended:
            self.audit.record(
                SESSIONS_ENDED,
                target=username,
                details={"reason": ENDED_BY_DISABLE, "sessions": ended},
            )

    # --- group mappings -------------------------------------------------------------

    def group_maps(self) -> list[tuple[int, str, int, str]]:
        """``(map id, external group, group id, group name)`` sorted by group, then name."""
        with self.db.session() as session:
            rows = session.execute(
                select(
                    DirectoryGroupMap.id,
                    DirectoryGroupMap.external_group,
                    Group.id,
                    Group.name,
                )
                .join(Group, Group.id == DirectoryGroupMap.group_id)
                .where(DirectoryGroupMap.source == self.source)
                .order_by(func.lower(Group.name), DirectoryGroupMap.external_group)
            ).all()
            return [(r[0], r[1], r[2], r[3]) for r in rows]

    def add_group_map(
        self, external_group: str, group_id: int, *, actor: Principal | None = None
    ) -> int:
        """Map a directory group (a DN, or a group's name) to a docqa group; its id. The
        members follow at their next sign-in or re-sync."""
        key = _check_external_group(external_group)
        with self.db.session() as session:
            group = session.get(Group, group_id)
            if group is None:
                raise NotFound(N_("no group with id %(id)s", id=group_id))
            group_name = group.name
            row = DirectoryGroupMap(source=self.source, external_group=key, group_id=group_id)
            session.add(row)
            try:
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise Conflict(
                    N_("%(group)s is already mapped to that group", group=repr(external_group))
                ) from exc
            map_id = row.id
        self.audit.record(
            DIRECTORY_MAP,
            actor=actor,
            target=group_name,
            details={"source": self.source, "external_group": key, "map_id": map_id},
        )
        return map_id

    def remove_group_map(self, map_id: int, *, actor: Principal | None = None) -> None:
        with self.db.session() as session:
            row = session.get(DirectoryGroupMap, map_id)
            if row is None or row.source != self.source:
                raise NotFound(N_("no group mapping with id %(id)s", id=map_id))
            key, group = row.external_group, session.get(Group, row.group_id)
            result = session.execute(
                delete(DirectoryGroupMap).where(
                    DirectoryGroupMap.id == map_id, DirectoryGroupMap.source == self.source
                )
            )
            gone = int(getattr(result, "rowcount", 0) or 0)
            if not gone:
                raise NotFound(N_("no group mapping with id %(id)s", id=map_id))
            session.commit()
        self.audit.record(
            DIRECTORY_MAP,
            actor=actor,
            target=group.name if group is not None else None,
            details={"source": self.source, "external_group": key, "removed": map_id},
        )


def _check_external_group(value: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_EXTERNAL_GROUP_CHARS or any(ord(c) < 32 for c in text):
        raise InvalidInput(
            N_(
                "a directory group is a DN or a group name of 1-%(max)s printable characters",
                max=MAX_EXTERNAL_GROUP_CHARS,
            )
        )
    # A DN is compared in its normal form; a bare name (no "=") lower-cased.
    return normal_dn(text) if "=" in text else text.lower()


def _find(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def _refresh(session: Session, user: User, account: DirectoryAccount, source: str) -> bool:
    """Copy what the directory owns onto ``user``; whether anything changed."""
    changed = False
    for attr, value in (
        ("display_name", (account.display_name or "")[:200] or None),
        ("email", (account.email or "")[:320] or None),
        ("external_id", account.dn[:1024]),
    ):
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            changed = True
    user.synced_at = utcnow()
    session.flush()  # a new user needs its id for the memberships below
    return _apply_groups(session, user.id, account, source) or changed


def _apply_groups(session: Session, user_id: int, account: DirectoryAccount, source: str) -> bool:
    maps = session.execute(
        select(DirectoryGroupMap.group_id, DirectoryGroupMap.external_group).where(
            DirectoryGroupMap.source == source
        )
    ).all()
    managed = {group_id for group_id, _ in maps}
    wanted = {group_id for group_id, key in maps if key in account.groups}
    current = set(
        session.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user_id))
    )
    leave = (managed & current) - wanted
    join = wanted - current
    if leave:
        session.execute(
            delete(GroupMember).where(
                GroupMember.user_id == user_id, GroupMember.group_id.in_(leave)
            )
        )
    for group_id in sorted(join):
        session.add(GroupMember(group_id=group_id, user_id=user_id))
    return bool(leave or join)
