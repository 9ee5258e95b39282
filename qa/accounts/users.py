"""Users, roles, groups and API tokens: who someone is and what they may do in general.

Roles are coarse (admin > editor > reader); which collections a user may read or change is
decided by grants, in ``qa.accounts.access``. Every call reads the database, so a deleted or
disabled account, a new role or a revoked token takes effect on the very next request.

Passwords are stored as scrypt strings that name their own parameters, so the cost can be
raised later without breaking the hashes already stored. API tokens are stored only as a
sha256: a copy of the database does not contain a usable token.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import re
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qa.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from qa.limits import MAX_ANSWER_TOKENS, MAX_SYSTEM_PROMPT_CHARS, MAX_TEMPERATURE
from qa.messages import N_, Translatable
from qa.storable_text import repaired
from qa.store.db.engine import Database
from qa.store.db.models import ApiToken, Group, GroupMember, User, utcnow
from qa.store.user_sessions import delete_user_sessions

ADMIN, EDITOR, READER = "admin", "editor", "reader"
ROLES = (ADMIN, EDITOR, READER)
#: ``User.auth_source`` of an account whose password docqa checks itself
LOCAL = "local"

#: the account ``ensure_first_admin`` creates on an empty database
FIRST_ADMIN_USERNAME = "admin"
MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS = 8, 1024
MAX_DISPLAY_NAME_CHARS = 200
MAX_GROUP_NAME_CHARS = 100
MAX_TOKEN_NAME_CHARS = 100
THEMES = ("dark", "light")
#: the web UI's languages (web.i18n); no preference means the browser's
LANGUAGES = ("en", "zh")
#: every preference key set_preferences accepts
PREFERENCE_KEYS = ("system_prompt", "temperature", "top_p", "max_tokens", "theme", "language")
#: API tokens start with this, so a leaked one is easy to recognise (and to grep for)
TOKEN_PREFIX = "dq_"

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_LOGIN = N_("wrong username or password")
_SESSION_ENDED = N_("the account no longer exists or is disabled; sign in again")
_BAD_TOKEN = N_("invalid or revoked API token")

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_DKLEN = 32
_SALT_BYTES = 16
# Stored hashes are parsed defensively: a corrupted row must not make one sign-in
# allocate gigabytes.
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_MAX_STORED_N = 2**20
_TOKEN_DISPLAY_CHARS = 11
_TOKEN_TOUCH_EVERY = timedelta(minutes=1)
_FIRST_ADMIN_PASSWORD_CHARS = 20


# --- passwords ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # surrogatepass: every Python str has a byte form, so hashing never fails on input.
    secret = password.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_SCRYPT_MAXMEM)


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$<salt b64>$<hash b64>``: the parameters travel with the hash."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_DKLEN)
    parts = ("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    return "$".join(parts)


def _sane_scrypt_params(n: int, r: int, p: int) -> bool:
    return 2 <= n <= _MAX_STORED_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check; a malformed ``stored`` value is a mismatch, never an error."""
    try:
        scheme, n_text, r_text, p_text, salt_b64, hash_b64 = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
    except (ValueError, TypeError, AttributeError):
        return False
    if scheme != "scrypt" or not _sane_scrypt_params(n, r, p) or not salt:
        return False
    if not 16 <= len(expected) <= 64:
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    # Verified for unknown usernames so that "no such user" costs as long as "wrong password".
    return hash_password(secrets.token_urlsafe(16))


def random_password(length: int) -> str:
    """Letters and digits from ``secrets``: the first admin's, and generated ones."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def secret_hash(plaintext: str) -> str:
    """What the database stores instead of a bearer secret (an API token, a session id)."""
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- principals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The signed-in user as the rest of the code sees it: a snapshot, rebuilt per request."""

    user_id: int
    username: str
    role: str
    display_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def can_manage_collections(self) -> bool:
        return self.role in (ADMIN, EDITOR)


def principal_of(user: User) -> Principal:
    return Principal(user.id, user.username, user.role, user.display_name)


#: why a change of the account ended its sessions (the audit log's ``reason``)
ENDED_BY_PASSWORD, ENDED_BY_ROLE, ENDED_BY_DISABLE = "password", "role", "disabled"


@dataclass(frozen=True)
class UserUpdate:
    """The account after ``update_user``, and the sessions the change ended."""

    principal: Principal
    #: the changes that end every session of the user, in the order above; empty if none
    session_reasons: tuple[str, ...] = ()
    sessions_ended: int = 0


def _stored_preferences(user: User) -> dict[str, Any]:
    """A copy of the user's stored preferences, as every reader of them must see them.

    Preferences stored before the web refused lone surrogates (issue 12) made every later
    answer that showed them fail: they are repaired here, for the caller to commit (the
    column is set only when a repair changed something)."""
    prefs = dict(user.preferences or {})
    fixed = repaired(prefs)
    if fixed != prefs:
        user.preferences = fixed
    return dict(fixed)


# --- input checks -------------------------------------------------------------------------


def check_username(username: str) -> str:
    name = username.strip() if isinstance(username, str) else ""
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            N_(
                "usernames are 1-64 letters, digits, '_', '.', '@' or '-',"
                " starting with a letter or digit"
            )
        )
    return name


def _check_password(password: str) -> str:
    if not isinstance(password, str):
        raise InvalidInput(N_("password must be text"))
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(
            N_(
                "passwords are %(min)s to %(max)s characters long",
                min=MIN_PASSWORD_CHARS,
                max=MAX_PASSWORD_CHARS,
            )
        )
    return password


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            N_("unknown role %(role)s; one of %(roles)s", role=repr(role), roles=", ".join(ROLES))
        )
    return role


def _check_label(value: str, what: Translatable, max_chars: int) -> str:
    """A one-line, human-typed name: stripped, 1..max_chars, no control characters."""
    text = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(text) <= max_chars:
        raise InvalidInput(N_("%(what)s must be 1 to %(max)s characters", what=what, max=max_chars))
    if _CONTROL.search(text):
        raise InvalidInput(N_("%(what)s must not contain control characters", what=what))
    return text


def _check_display_name(display_name: str | None) -> str | None:
    if display_name is None or (isinstance(display_name, str) and not display_name.strip()):
        return None
    return _check_label(display_name, N_("display name"), MAX_DISPLAY_NAME_CHARS)


def _check_ids(ids: Sequence[int], what: str) -> list[int]:
    if isinstance(ids, str | bytes) or any(
        isinstance(i, bool) or not isinstance(i, int) for i in ids
    ):
        raise InvalidInput(N_("%(what)s must be a list of integer ids", what=what))
    return sorted(set(ids))


# --- preferences --------------------------------------------------------------------------


def _pref_system_prompt(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # back to the default prompt
    if not isinstance(value, str):
        raise InvalidInput(N_("system_prompt must be text"))
    if len(value) > MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInput(
            N_("system_prompt must be at most %(max)s characters", max=MAX_SYSTEM_PROMPT_CHARS)
        )
    return value


def _as_float(field: str, value: Any) -> float:
    # bool is an int subclass, but `true` for a temperature is a client bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(N_("%(field)s must be a number", field=field))
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(N_("%(field)s must be a finite number", field=field))
    return number


def _pref_temperature(value: Any) -> float:
    number = _as_float("temperature", value)
    if not 0.0 <= number <= MAX_TEMPERATURE:
        raise InvalidInput(
            N_("temperature must be between 0 and %(max)s", max=f"{MAX_TEMPERATURE:g}")
        )
    return number


def _pref_top_p(value: Any) -> float:
    number = _as_float("top_p", value)
    if not 0.0 < number <= 1.0:
        raise InvalidInput(N_("top_p must be greater than 0 and at most 1"))
    return number


def _pref_max_tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(N_("max_tokens must be a whole number"))
    if not 1 <= value <= MAX_ANSWER_TOKENS:
        raise InvalidInput(N_("max_tokens must be between 1 and %(max)s", max=MAX_ANSWER_TOKENS))
    return value


def _pref_theme(value: Any) -> str:
    if value not in THEMES:
        raise InvalidInput(N_("theme must be one of %(values)s", values=", ".join(THEMES)))
    return str(value)


def _pref_language(value: Any) -> str:
    if value not in LANGUAGES:
        raise InvalidInput(N_("language must be one of %(values)s", values=", ".join(LANGUAGES)))
    return str(value)


_PREFERENCE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "system_prompt": _pref_system_prompt,
    "temperature": _pref_temperature,
    "top_p": _pref_top_p,
    "max_tokens": _pref_max_tokens,
    "theme": _pref_theme,
    "language": _pref_language,
}


def _check_preferences(prefs: Mapping[str, Any]) -> dict[str, Any]:
    """Validated values; ``None`` means "back to the default" (the key is removed)."""
    if not isinstance(prefs, Mapping):
        raise InvalidInput(N_("preferences must be an object"))
    cleaned: dict[str, Any] = {}
    for key, value in prefs.items():
        check = _PREFERENCE_CHECKS.get(key) if isinstance(key, str) else None
        if check is None:
            raise InvalidInput(
                N_(
                    "unknown preference %(key)s; one of %(keys)s",
                    key=repr(key),
                    keys=", ".join(PREFERENCE_KEYS),
                )
            )
        cleaned[key] = None if value is None else check(value)
    return cleaned


# --- the service --------------------------------------------------------------------------


class AccountService:
    """Users, groups and API tokens in the metadata DB."""

    def __init__(self, db: Database) -> None:
        self.db = db
        _dummy_hash()  # pay for it now, not during the first unknown-user sign-in

    # users

    def create_user(
        self,
        username: str,
        password: str,
        role: str = READER,
        display_name: str | None = None,
    ) -> Principal:
        username = check_username(username)
        password_hash = hash_password(_check_password(password))
        role = _check_role(role)
        display_name = _check_display_name(display_name)
        with self.db.session() as session:
            if _find_user(session, username) is not None:
                raise Conflict(N_("the username %(name)s is taken", name=repr(username)))
            user = User(
                username=username,
                password_hash=password_hash,
                role=role,
                display_name=display_name,
                disabled=False,
                preferences={},
            )
            session.add(user)
            try:
                session.commit()
            except IntegrityError as exc:  # created by a concurrent request
                session.rollback()
                raise Conflict(N_("the username %(name)s is taken", name=repr(username))) from exc
            return principal_of(user)

    def authenticate(self, username: str, password: str) -> Principal:
        """The user for a username (any letter case) and password, or Unauthenticated.

        Unknown, disabled and wrong-password all fail with the same message after the
        same amount of work, so the answer does not reveal which accounts exist.
        """
        name = username.strip() if isinstance(username, str) else ""
        with self.db.session() as session:
            user = _find_user(session, name) if USERNAME_PATTERN.fullmatch(name) else None
            if user is None:
                verify_password(password, _dummy_hash())
                raise Unauthenticated(_BAD_LOGIN)
            if not verify_password(password, user.password_hash) or user.disabled:
                raise Unauthenticated(_BAD_LOGIN)
            user.last_login_at = utcnow()
            session.commit()
            return principal_of(user)

    def source_of(self, username: str) -> str | None:
        """Who checks this account's password: "local", a directory ("ldap"), or None
        when no account has the name (yet)."""
        name = username.strip() if isinstance(username, str) else ""
        if not USERNAME_PATTERN.fullmatch(name):
            return None
        with self.db.session() as session:
            user = _find_user(session, name)
            return None if user is None else user.auth_source

    def principal(self, user_id: int) -> Principal:
        """The current state of a user (disabled or deleted: Unauthenticated). A browser
        request reads its user through its session instead (``qa.accounts.sessions``)."""
        with self.db.session() as session:
            user = session.get(User, user_id)
            if user is None or user.disabled:
                raise Unauthenticated(_SESSION_ENDED)
            return principal_of(user)

    def list_users(self) -> list[User]:
        with self.db.session() as session:
            query = select(User).order_by(func.lower(User.username))
            return list(session.scalars(query).all())

    def get_user(self, user_id: int) -> User:
        with self.db.session() as session:
            return _get_user(session, user_id)

    def update_user(
        self,
        user_id: int,
        *,
        role: str | None = None,
        display_name: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> UserUpdate:
        """Change the given fields only. ``display_name=""`` clears the display name.

        A new password, a new role or disabling the account ends every browser session of
        the user in the same transaction: whoever held a session must sign in again, with
        the new password and under the new role. API tokens stay valid (a disabled
        account's tokens are refused while it is disabled).
        """
        if role is not None:
            _check_role(role)
        if disabled is not None and not isinstance(disabled, bool):
            raise InvalidInput(N_("disabled must be true or false"))
        new_name = _check_display_name(display_name) if display_name is not None else None
        new_hash = hash_password(_check_password(password)) if password is not None else None
        with self.db.session() as session:
            user = _get_user(session, user_id)
            if new_hash is not None and user.auth_source != LOCAL:
                raise InvalidInput(
                    N_("this account signs in through the directory; its password is changed there")
                )
            still_admin = (role or user.role) == ADMIN and not (
                user.disabled if disabled is None else disabled
            )
            if user.role == ADMIN and not user.disabled and not still_admin:
                _require_another_admin(session, user.id)
            reasons = tuple(
                reason
                for reason, ends in (
                    (ENDED_BY_PASSWORD, new_hash is not None),
                    (ENDED_BY_ROLE, role is not None and role != user.role),
                    (ENDED_BY_DISABLE, disabled is True and not user.disabled),
                )
                if ends
            )
            if role is not None:
                user.role = role
            if display_name is not None:
                user.display_name = new_name
            if disabled is not None:
                user.disabled = disabled
            if new_hash is not None:
                user.password_hash = new_hash
            ended = delete_user_sessions(session, user.id) if reasons else 0
            session.commit()
            return UserUpdate(principal_of(user), reasons, ended)

    def delete_user(self, user_id: int) -> None:
        """Delete the account; its tokens, chats, memberships and grants go with it."""
        with self.db.session() as session:
            user = _get_user(session, user_id)
            if user.role == ADMIN and not user.disabled:
                _require_another_admin(session, user.id)
            session.delete(user)
            session.commit()

    # preferences

    def preferences(self, user_id: int) -> dict[str, Any]:
        """Only the keys the user has set; a missing key means "use the default"."""
        with self.db.session() as session:
            user = _get_user(session, user_id)
            prefs = _stored_preferences(user)
            if session.dirty:  # repaired
                session.commit()
            return prefs

    def set_preferences(self, user_id: int, prefs: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``prefs`` into the stored ones (all or nothing); a ``None`` value resets."""
        cleaned = _check_preferences(prefs)
        with self.db.session() as session:
            user = _get_user(session, user_id)
            merged = _stored_preferences(user)
            for key, value in cleaned.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            user.preferences = merged  # a new object: JSON columns do not track mutation
            session.commit()
            return dict(merged)

    # groups

    def create_group(self, name: str) -> Group:
        name = _check_label(name, N_("group name"), MAX_GROUP_NAME_CHARS)
        with self.db.session() as session:
            _require_free_group_name(session, name, None)
            group = Group(name=name)
            session.add(group)
            _commit_group(session, name)
            return group

    def rename_group(self, group_id: int, name: str) -> Group:
        name = _check_label(name, N_("group name"), MAX_GROUP_NAME_CHARS)
        with self.db.session() as session:
            group = _get_group(session, group_id)
            _require_free_group_name(session, name, group_id)
            group.name = name
            _commit_group(session, name)
            return group

    def delete_group(self, group_id: int) -> None:
        """Delete the group; its memberships and collection grants go with it."""
        with self.db.session() as session:
            session.delete(_get_group(session, group_id))
            session.commit()

    def list_groups(self) -> list[tuple[Group, list[int]]]:
        """Every group (by name) with the sorted ids of its members."""
        with self.db.session() as session:
            groups = session.scalars(select(Group).order_by(func.lower(Group.name))).all()
            members: dict[int, list[int]] = {g.id: [] for g in groups}
            pairs = session.execute(
                select(GroupMember.group_id, GroupMember.user_id).order_by(GroupMember.user_id)
            )
            for group_id, user_id in pairs:
                members.setdefault(group_id, []).append(user_id)
            return [(g, members[g.id]) for g in groups]

    def set_members(self, group_id: int, user_ids: Sequence[int]) -> None:
        """Replace the members of a group (duplicates are ignored)."""
        wanted = _check_ids(user_ids, "user_ids")
        with self.db.session() as session:
            _get_group(session, group_id)
            found = set(session.scalars(select(User.id).where(User.id.in_(wanted))).all())
            missing = [i for i in wanted if i not in found]
            if missing:
                raise NotFound(N_("no user with id %(id)s", id=", ".join(map(str, missing))))
            session.execute(delete(GroupMember).where(GroupMember.group_id == group_id))
            session.add_all(GroupMember(group_id=group_id, user_id=u) for u in wanted)
            try:
                session.commit()
            except IntegrityError as exc:  # a user or the group was deleted meanwhile
                session.rollback()
                raise NotFound(N_("a user or the group was deleted meanwhile; reload")) from exc

    def group_ids_of(self, user_id: int) -> list[int]:
        with self.db.session() as session:
            query = (
                select(GroupMember.group_id)
                .where(GroupMember.user_id == user_id)
                .order_by(GroupMember.group_id)
            )
            return list(session.scalars(query).all())

    # API tokens

    def create_token(self, user_id: int, name: str) -> tuple[str, ApiToken]:
        """A new token: the plaintext is returned here once and never stored."""
        name = _check_label(name, N_("token name"), MAX_TOKEN_NAME_CHARS)
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as session:
            _get_user(session, user_id)
            token = ApiToken(
                user_id=user_id,
                name=name,
                token_hash=secret_hash(plaintext),
                prefix=plaintext[:_TOKEN_DISPLAY_CHARS],
            )
            session.add(token)
            session.commit()
            return plaintext, token

    def authenticate_token(self, plaintext: str) -> Principal:
        if not isinstance(plaintext, str) or not plaintext:
            raise Unauthenticated(_BAD_TOKEN)
        with self.db.session() as session:
            row = session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == secret_hash(plaintext))
            ).first()
            if row is None:
                raise Unauthenticated(_BAD_TOKEN)
            token, user = row
            if token.revoked_at is not None or user.disabled:
                raise Unauthenticated(_BAD_TOKEN)
            now = utcnow()
            # A write per request would serialize API traffic on SQLite; a minute is
            # precise enough to tell a live token from a forgotten one.
            if token.last_used_at is None or now - _aware(token.last_used_at) >= _TOKEN_TOUCH_EVERY:
                token.last_used_at = now
                session.commit()
            return principal_of(user)

    def list_tokens(self, user_id: int | None = None) -> list[ApiToken]:
        """Newest first, revoked ones included (their ``revoked_at`` is set)."""
        query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        if user_id is not None:
            query = query.where(ApiToken.user_id == user_id)
        with self.db.session() as session:
            return list(session.scalars(query).all())

    def revoke_token(self, token_id: int, *, owner_id: int | None = None) -> None:
        """Revoke (idempotent). With ``owner_id``, someone else's token is NotFound."""
        with self.db.session() as session:
            token = session.get(ApiToken, token_id)
            if token is None or (owner_id is not None and token.user_id != owner_id):
                raise NotFound(N_("no API token with id %(id)s", id=token_id))
            if token.revoked_at is None:
                token.revoked_at = utcnow()
                session.commit()

    # first start

    def ensure_first_admin(self) -> tuple[str, str] | None:
        """On an empty database, create ``admin`` with a random password and return both.

        Two processes starting at once may both see no users; the loser's insert fails on
        the unique username and it returns None, so the credentials are printed once.
        """
        with self.db.session() as session:
            if session.scalar(select(User.id).limit(1)) is not None:
                return None
            password = random_password(_FIRST_ADMIN_PASSWORD_CHARS)
            session.add(
                User(
                    username=FIRST_ADMIN_USERNAME,
                    password_hash=hash_password(password),
                    role=ADMIN,
                    disabled=False,
                    preferences={},
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return None
            return FIRST_ADMIN_USERNAME, password


# --- session helpers ----------------------------------------------------------------------


def _find_user(session: Session, username: str) -> User | None:
    query = select(User).where(func.lower(User.username) == username.lower())
    return session.scalar(query)


def _get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(N_("no user with id %(id)s", id=user_id))
    return user


def _get_group(session: Session, group_id: int) -> Group:
    group = session.get(Group, group_id)
    if group is None:
        raise NotFound(N_("no group with id %(id)s", id=group_id))
    return group


def _require_another_admin(session: Session, user_id: int) -> None:
    """Refuse a change that would leave no enabled admin to administer the service.

    The enabled admins are locked (FOR UPDATE on PostgreSQL; SQLite has one writer) so
    two admins demoting each other at once cannot both succeed.
    """
    query = select(User.id).where(User.role == ADMIN, User.disabled.is_(False)).with_for_update()
    if not any(other != user_id for other in session.scalars(query).all()):
        raise InvalidInput(N_("this is the last enabled admin; make another user admin first"))


def _require_free_group_name(session: Session, name: str, group_id: int | None) -> None:
    query = select(Group.id).where(func.lower(Group.name) == name.lower())
    if group_id is not None:
        query = query.where(Group.id != group_id)
    if session.scalar(query) is not None:
        raise Conflict(N_("a group named %(name)s exists", name=repr(name)))


def _commit_group(session: Session, name: str) -> None:
    try:
        session.commit()
    except IntegrityError as exc:  # created by a concurrent request
        session.rollback()
        raise Conflict(N_("a group named %(name)s exists", name=repr(name))) from exc
