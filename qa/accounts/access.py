"""Who may read or change which collection.

Admins may do everything. Everyone else reads a collection only through a grant, to
themselves or to a group they are in, and changes one only when they are an editor *and*
hold a write grant (a reader's write grant reads, nothing more). Grants are read from the
database on every call, so removing a grant or a group membership takes effect at once.

A collection the caller may not read is reported as absent (``NotFound``), never as
forbidden, so its existence is not revealed. Retrieval asks this module for the readable
ids before it searches, which keeps unreadable chunks out of scoring as well as results.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qa.accounts.users import EDITOR, Principal
from qa.errors import InvalidInput, NotFound, PermissionDenied
from qa.messages import N_
from qa.store.catalog import list_collections
from qa.store.db.engine import Database
from qa.store.db.models import Collection, CollectionGrant, Group, GroupMember, User

READ, WRITE = "read", "write"
PERMISSIONS = (READ, WRITE)


@dataclass(frozen=True)
class GrantView:
    """One grant of a collection, with names for display (exactly one principal is set)."""

    user_id: int | None
    username: str | None
    group_id: int | None
    group_name: str | None
    permission: str


def _absent(collection_id: int) -> NotFound:
    return NotFound(N_("no collection with id %(id)s", id=collection_id))


def _granted(p: Principal, *, write: bool) -> Select[int]:
    """Collection ids granted to the user directly or through a group they are in now."""
    groups = select(GroupMember.group_id).where(GroupMember.user_id == p.user_id)
    query = select(CollectionGrant.collection_id).where(
        or_(CollectionGrant.user_id == p.user_id, CollectionGrant.group_id.in_(groups))
    )
    if write:
        query = query.where(CollectionGrant.permission == WRITE)
    return query


def _readable(p: Principal) -> Select[int]:
    query = select(Collection.id)
    if p.is_admin:
        return query
    return query.where(Collection.id.in_(_granted(p, write=False)))


def _writable(p: Principal) -> Select[int] | None:
    """None when the role can change nothing, whatever the grants say."""
    query = select(Collection.id)
    if p.is_admin:
        return query
    if p.role != EDITOR:
        return None
    return query.where(Collection.id.in_(_granted(p, write=True)))


def _one_principal(user_id: int | None, group_id: int | None) -> ColumnElement[bool]:
    if (user_id is None) == (group_id is None):
        raise InvalidInput(N_("give exactly one of user_id and group_id"))
    if user_id is not None:
        return CollectionGrant.user_id == user_id
    return CollectionGrant.group_id == group_id


class AccessService:
    """Grants and the checks built on them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # checks

    def readable_collection_ids(self, p: Principal) -> list[int]:
        with self.db.session() as session:
            return list(session.scalars(_readable(p).order_by(Collection.id)).all())

    def writable_collection_ids(self, p: Principal) -> list[int]:
        query = _writable(p)
        if query is None:
            return []
        with self.db.session() as session:
            return list(session.scalars(query.order_by(Collection.id)).all())

    def require_read(self, p: Principal, collection_id: int) -> None:
        with self.db.session() as session:
            if not _exists(session, _readable(p), collection_id):
                raise _absent(collection_id)

    def require_write(self, p: Principal, collection_id: int) -> None:
        with self.db.session() as session:
            if not _exists(session, _readable(p), collection_id):
                raise _absent(collection_id)
            writable = _writable(p)
            if writable is None or not _exists(session, writable, collection_id):
                raise PermissionDenied(
                    N_("you may read collection %(id)s but not change it", id=collection_id)
                )

    def visible_collections(self, p: Principal) -> list[tuple[Collection, int, int]]:
        """``qa.store.catalog.list_collections`` (with counts), only the readable ones."""
        with self.db.session() as session:
            readable = set(session.scalars(_readable(p)).all())
            return [row for row in list_collections(session) if row[0].id in readable]

    # grants

    def grant(
        self,
        collection_id: int,
        permission: str,
        *,
        user_id: int | None = None,
        group_id: int | None = None,
    ) -> None:
        """Set the permission of one user or group on a collection (read or write).

        One row per principal and collection: granting again replaces the permission, so
        ``read`` after ``write`` downgrades.
        """
        if permission not in PERMISSIONS:
            raise InvalidInput(
                N_(
                    "unknown permission %(permission)s; one of %(permissions)s",
                    permission=repr(permission),
                    permissions=", ".join(PERMISSIONS),
                )
            )
        who = _one_principal(user_id, group_id)
        with self.db.session() as session:
            _require_targets(session, collection_id, user_id, group_id)
            for attempt in range(2):
                row = session.scalar(
                    select(CollectionGrant).where(
                        CollectionGrant.collection_id == collection_id, who
                    )
                )
                if row is not None:
                    row.permission = permission
                else:
                    session.add(
                        CollectionGrant(
                            collection_id=collection_id,
                            user_id=user_id,
                            group_id=group_id,
                            permission=permission,
                        )
                    )
                try:
                    session.commit()
                    return
                except IntegrityError:
                    # A concurrent grant inserted the row first (update it on the retry),
                    # or the collection/principal was deleted meanwhile (the check says so).
                    session.rollback()
                    if attempt:
                        raise
                    _require_targets(session, collection_id, user_id, group_id)

    def revoke(
        self, collection_id: int, *, user_id: int | None = None, group_id: int | None = None
    ) -> None:
        """Remove the grant of one user or group; nothing to remove is not an error."""
        who = _one_principal(user_id, group_id)
        with self.db.session() as session:
            session.execute(
                delete(CollectionGrant).where(CollectionGrant.collection_id == collection_id, who)
            )
            session.commit()

    def grants(self, collection_id: int) -> list[GrantView]:
        """Grants of a collection: users (by username) first, then groups (by name)."""
        with self.db.session() as session:
            if session.get(Collection, collection_id) is None:
                raise _absent(collection_id)
            rows = session.execute(
                select(
                    CollectionGrant.user_id,
                    User.username,
                    CollectionGrant.group_id,
                    Group.name,
                    CollectionGrant.permission,
                )
                .outerjoin(User, User.id == CollectionGrant.user_id)
                .outerjoin(Group, Group.id == CollectionGrant.group_id)
                .where(CollectionGrant.collection_id == collection_id)
            ).all()
        views = [GrantView(*row) for row in rows]
        return sorted(
            views,
            key=lambda v: (v.user_id is None, (v.username or v.group_name or "").lower()),
        )


def _exists(session: Session, allowed: Select[int], collection_id: int) -> bool:
    return session.scalar(allowed.where(Collection.id == collection_id)) is not None


def _require_targets(
    session: Session, collection_id: int, user_id: int | None, group_id: int | None
) -> None:
    if session.get(Collection, collection_id) is None:
        raise _absent(collection_id)
    if user_id is not None and session.get(User, user_id) is None:
        raise NotFound(N_("no user with id %(id)s", id=user_id))
    if group_id is not None and session.get(Group, group_id) is None:
        raise NotFound(N_("no group with id %(id)s", id=group_id))
