"""Who someone is according to an LDAP directory (OpenLDAP, Active Directory).

``LdapDirectory.authenticate`` finds the user's entry with the search account (or an
anonymous bind), then binds as that entry with the typed password: the directory, not
docqa, checks the password. ``lookup`` finds the entry without a password, for the
periodic re-sync. Both return a ``DirectoryAccount`` with the user's groups, read from the
entry's ``memberOf`` and/or found by a group search.

Failing closed is the rule: an unreachable server, a TLS certificate that does not check
out or a search account that cannot bind is ``Unavailable`` (nobody signs in through the
directory, nobody is disabled by a re-sync), never a fallback to something weaker. Every
connection has connect and read timeouts, so a dead server costs a bounded wait, and
referrals are not followed (they would lead to hosts nobody configured).

Client: ldap3, pure Python, so installing docqa needs no OpenLDAP headers or compiler
(python-ldap, the other maintained client, builds against libldap from source).
"""

from __future__ import annotations

import logging
import math
import re
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldap3 import NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from qa.errors import ConfigError, Unauthenticated, Unavailable
from qa.messages import N_
from qa.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "ldap"
#: the same words as a local account's wrong password: which part was wrong is not told
BAD_LOGIN = N_("wrong username or password")
UNREACHABLE = N_(
    "the directory server can't be reached, so directory accounts can't sign in right now;"
    " try again in a few minutes"
)
#: Active Directory's userAccountControl flag of a disabled account
_AD_ACCOUNT_DISABLED = 0x2
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class LdapConfig:
    """The ``DOCQA_LDAP_*`` settings, checked (defaults and meanings: qa/settings.py)."""

    urls: tuple[str, ...]
    starttls: bool
    ca_file: Path | None
    bind_dn: str | None
    bind_password: str | None
    user_base: str
    user_filter: str
    display_name_attr: str
    email_attr: str
    group_attr: str | None
    group_base: str
    group_filter: str
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LdapConfig | None:
        """The configured directory, or None when ``DOCQA_LDAP_URL`` is unset."""
        if not settings.ldap_url or not settings.ldap_url.strip():
            return None
        urls = tuple(u for u in re.split(r"[\s,]+", settings.ldap_url.strip()) if u)
        for url in urls:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise ConfigError(f"DOCQA_LDAP_URL: {url!r} is not an ldap:// or ldaps:// URL")
        if "{username}" not in settings.ldap_user_filter:
            raise ConfigError("DOCQA_LDAP_USER_FILTER must contain {username}")
        if settings.ldap_ca_file is not None and not settings.ldap_ca_file.is_file():
            raise ConfigError(f"DOCQA_LDAP_CA_FILE: no file at {settings.ldap_ca_file}")
        return cls(
            urls=urls,
            starttls=settings.ldap_starttls,
            ca_file=settings.ldap_ca_file,
            bind_dn=settings.ldap_bind_dn or None,
            bind_password=settings.ldap_bind_password,
            user_base=settings.ldap_user_base,
            user_filter=settings.ldap_user_filter,
            display_name_attr=settings.ldap_display_name_attr,
            email_attr=settings.ldap_email_attr,
            group_attr=settings.ldap_group_attr or None,
            group_base=settings.ldap_group_base,
            group_filter=settings.ldap_group_filter,
            timeout_s=settings.ldap_timeout_s,
        )


@dataclass(frozen=True)
class DirectoryAccount:
    """One person as the directory describes them right now."""

    username: str
    dn: str
    display_name: str | None
    email: str | None
    #: every name the user's groups go by, normalized (``group_keys``): DNs and cns
    groups: frozenset[str]
    #: Active Directory marks the entry disabled (userAccountControl)
    disabled: bool = False


def normal_dn(dn: str) -> str:
    """A DN in the form stored mappings compare against: RDNs without the spaces around
    them, types and values lower-cased (directories compare DNs without case)."""
    parts = []
    for rdn in _UNESCAPED_COMMA.split(dn.strip()):
        kind, _, value = rdn.partition("=")
        parts.append(f"{kind.strip().lower()}={value.strip().lower()}")
    return ",".join(parts)


def group_keys(dn: str, names: Sequence[str] = ()) -> set[str]:
    """The keys a group may be mapped by: its DN, its first RDN's value (``cn=Finance,...``
    -> ``finance``) and any extra names (its cn attribute)."""
    key = normal_dn(dn)
    first = key.split(",", 1)[0].partition("=")[2]
    keys = {key, *(n.strip().lower() for n in names if n.strip())}
    if first:
        keys.add(first.replace("\\", ""))
    return keys


class LdapDirectory:
    def __init__(self, config: LdapConfig) -> None:
        self.config = config
        self._tls = Tls(
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            ca_certs_file=str(config.ca_file) if config.ca_file else None,
        )

    # --- public ---------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> DirectoryAccount:
        """The account whose password this is, or Unauthenticated (also for a disabled
        one); Unavailable when the directory cannot answer."""
        # An empty password makes a simple bind "unauthenticated" (RFC 4513 5.1.2), which
        # many servers accept as success: it must never reach the server.
        if not password or not username:
            raise Unauthenticated(BAD_LOGIN)
        with self._search_connection() as conn:
            found = self._find_user(conn, username)
            if found is None:
                raise Unauthenticated(BAD_LOGIN)
            dn, attributes = found
            with self._connection(dn, password, purpose="user bind") as user_conn:
                if user_conn is None:
                    raise Unauthenticated(BAD_LOGIN)
            account = self._account(conn, username, dn, attributes)
        if account.disabled:
            raise Unauthenticated(BAD_LOGIN)
        return account

    def lookup(self, username: str) -> DirectoryAccount | None:
        """The account as the directory has it now, None if no entry matches (gone);
        Unavailable when the directory cannot answer."""
        return next(self.lookups([username]))[1]

    def lookups(self, usernames: Iterable[str]) -> Iterator[tuple[str, DirectoryAccount | None]]:
        """``lookup`` for many names over one bound connection (the re-sync's: one bind per
        run, not one per account). Opening it raises Unavailable before the first name."""
        with self._search_connection() as conn:
            for username in usernames:
                found = self._find_user(conn, username)
                yield username, None if found is None else self._account(conn, username, *found)

    def check(self) -> str:
        """Connect and bind as the search account: a line for ``docqa directory check``."""
        with self._search_connection() as conn:
            server = conn.server
            who = self.config.bind_dn or "anonymous"
            return f"{server.host}:{server.port} answered; bound as {who}"

    # --- connections ----------------------------------------------------------------

    @contextmanager
    def _search_connection(self) -> Iterator[Connection]:
        with self._connection(self.config.bind_dn, self.config.bind_password, "search") as conn:
            if conn is None:
                # Wrong credentials of the search account are the admin's problem to fix;
                # to a user it is the same as a server that cannot be reached.
                log.error("LDAP: the search account %r was refused", self.config.bind_dn)
                raise Unavailable(UNREACHABLE)
            yield conn

    @contextmanager
    def _connection(
        self, user: str | None, password: str | None, purpose: str
    ) -> Iterator[Connection | None]:
        """A bound connection to the first server that answers; None when the server
        answered and refused the credentials."""
        conn = self._bound(user, password, purpose)
        try:
            yield conn
        finally:
            if conn is not None:
                _close(conn)

    def _bound(self, user: str | None, password: str | None, purpose: str) -> Connection | None:
        failures = []
        for url in self.config.urls:
            server = Server(
                url,
                use_ssl=url.lower().startswith("ldaps://"),
                tls=self._tls,
                connect_timeout=self.config.timeout_s,
                get_info=NONE,
            )
            conn = Connection(
                server,
                user=user,
                password=password if user else None,
                # ldap3 packs this into SO_RCVTIMEO as whole seconds
                receive_timeout=max(1, math.ceil(self.config.timeout_s)),
                read_only=True,
                auto_referrals=False,
                raise_exceptions=False,
            )
            try:
                conn.open()
                if self.config.starttls and not server.ssl and not conn.start_tls():
                    raise _Refused(f"StartTLS refused: {conn.result}")
                if conn.bind():
                    return conn
                result = conn.result or {}
            except (LDAPException, OSError, _Refused) as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                _close(conn)
                continue
            _close(conn)
            if result.get("description") == "invalidCredentials":
                return None
            failures.append(f"{url}: bind answered {result.get('description')}")
        log.error("LDAP %s failed on every server: %s", purpose, "; ".join(failures))
        raise Unavailable(UNREACHABLE)

    # --- entries --------------------------------------------------------------------

    def _search(
        self, conn: Connection, base: str, query: str, attributes: list[str], limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        try:
            conn.search(
                base,
                query,
                search_scope=SUBTREE,
                attributes=attributes,
                size_limit=limit,
                time_limit=max(1, int(self.config.timeout_s)),
            )
        except LDAPException as exc:
            log.error("LDAP search under %r failed: %s", base, exc)
            raise Unavailable(UNREACHABLE) from exc
        description = (conn.result or {}).get("description")
        if description not in ("success", "sizeLimitExceeded", "noSuchObject"):
            log.error("LDAP search under %r answered %s", base, conn.result)
            raise Unavailable(UNREACHABLE)
        return [
            (item["dn"], dict(item.get("attributes") or {}))
            for item in conn.response or []
            if item.get("type") == "searchResEntry"
        ]

    def _find_user(self, conn: Connection, username: str) -> tuple[str, dict[str, Any]] | None:
        query = self.config.user_filter.replace("{username}", escape_filter_chars(username))
        attributes = [self.config.display_name_attr, self.config.email_attr]
        attributes.append("userAccountControl")
        if self.config.group_attr:
            attributes.append(self.config.group_attr)
        entries = self._search(conn, self.config.user_base, query, attributes, limit=2)
        if len(entries) > 1:
            # Two people answering to one name is a filter that is too loose: nobody gets
            # in under it rather than whichever entry came first.
            log.error("LDAP: %d entries match %s; refusing the sign-in", len(entries), query)
            return None
        return entries[0] if entries else None

    def _account(
        self, conn: Connection, username: str, dn: str, attributes: dict[str, Any]
    ) -> DirectoryAccount:
        groups: set[str] = set()
        if self.config.group_attr:
            for group_dn in _values(attributes, self.config.group_attr):
                groups |= group_keys(group_dn)
        if self.config.group_base:
            query = self.config.group_filter.replace("{dn}", escape_filter_chars(dn)).replace(
                "{username}", escape_filter_chars(username)
            )
            for group_dn, group_attributes in self._search(
                conn, self.config.group_base, query, ["cn"], limit=1000
            ):
                groups |= group_keys(group_dn, _values(group_attributes, "cn"))
        control = _first(attributes, "userAccountControl")
        disabled = (
            control is not None and control.isdigit() and bool(int(control) & _AD_ACCOUNT_DISABLED)
        )
        return DirectoryAccount(
            username=username,
            dn=dn,
            display_name=_first(attributes, self.config.display_name_attr),
            email=_first(attributes, self.config.email_attr),
            groups=frozenset(groups),
            disabled=disabled,
        )


class _Refused(Exception):
    """A server that answered but would not go on (StartTLS refused)."""


def _close(conn: Connection) -> None:
    with suppress(LDAPException, OSError):
        conn.unbind()
    # A connection that failed halfway (a StartTLS handshake, say) may still hold its
    # socket after unbind gave up.
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.close()


def _values(attributes: dict[str, Any], name: str) -> list[str]:
    for key, value in attributes.items():
        if key.lower() == name.lower():
            items = value if isinstance(value, list) else [value]
            return [str(v) for v in items if v not in (None, "", b"")]
    return []


def _first(attributes: dict[str, Any], name: str) -> str | None:
    values = _values(attributes, name)
    return values[0].strip() or None if values else None
