"""Which door a sign-in goes through: the local password, the directory, or single sign-on.

A local account (``auth_source`` "local") is always checked locally, so the break-glass
admin works with the directory down, and nobody in the directory can take over a local
account by having the same name. Every other name typed into the form goes to the LDAP
directory when one is configured: a known directory account, or someone signing in for
the first time. Single sign-on (OpenID Connect) is a separate door, the "Sign in with"
button, whose accounts are kept apart the same way (an account belongs to one source).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from qa.accounts.audit import AuditLog
from qa.accounts.directory_accounts import DirectoryAccounts
from qa.accounts.ldap_directory import SOURCE as LDAP
from qa.accounts.ldap_directory import LdapConfig, LdapDirectory
from qa.accounts.oidc_client import SOURCE as OIDC
from qa.accounts.oidc_client import OidcClient, OidcConfig, PendingSignIn
from qa.accounts.users import USERNAME_PATTERN, AccountService, Principal
from qa.errors import NotFound
from qa.messages import N_
from qa.settings import Settings


@dataclass(frozen=True)
class ExternalSource:
    """A configured source of accounts, as the admin pages list them."""

    source: str
    #: the provider's name for single sign-on ("Keycloak"); "LDAP" for the directory (the
    #: pages put it in words of their language)
    name: str
    accounts: DirectoryAccounts


class SignIn:
    def __init__(
        self,
        accounts: AccountService,
        directory: LdapDirectory | None = None,
        directory_accounts: DirectoryAccounts | None = None,
        oidc: OidcClient | None = None,
        oidc_accounts: DirectoryAccounts | None = None,
    ) -> None:
        if (directory is None) != (directory_accounts is None):
            raise ValueError("a directory needs its DirectoryAccounts, and the other way round")
        if (oidc is None) != (oidc_accounts is None):
            raise ValueError("an OIDC client needs its DirectoryAccounts, and the other way round")
        self.accounts = accounts
        self.directory = directory
        self.directory_accounts = directory_accounts
        self.oidc = oidc
        self.oidc_accounts = oidc_accounts

    @classmethod
    def from_settings(cls, settings: Settings, accounts: AccountService, audit: AuditLog) -> SignIn:
        """Local accounts, plus the directory of ``DOCQA_LDAP_URL`` and the provider of
        ``DOCQA_OIDC_ISSUER`` when set (a ConfigError names a setting that cannot work)."""
        ldap_config = LdapConfig.from_settings(settings)
        oidc_config = OidcConfig.from_settings(settings)
        directory = directory_accounts = oidc = oidc_accounts = None
        if ldap_config is not None:
            directory = LdapDirectory(ldap_config)
            directory_accounts = DirectoryAccounts(
                accounts.db, audit, default_role=settings.ldap_default_role, source=LDAP
            )
        if oidc_config is not None:
            oidc = OidcClient(oidc_config)
            oidc_accounts = DirectoryAccounts(
                accounts.db,
                audit,
                default_role=settings.oidc_default_role,
                source=OIDC,
                stable_ids=True,
            )
        return cls(accounts, directory, directory_accounts, oidc, oidc_accounts)

    @property
    def has_directory(self) -> bool:
        return self.directory is not None

    @property
    def oidc_provider_name(self) -> str | None:
        """The name on the "Sign in with" button, or None without single sign-on."""
        return self.oidc.config.provider_name if self.oidc is not None else None

    @cached_property
    def oidc_origin(self) -> str | None:
        """``scheme://host[:port]`` of the provider (the pages' CSP lets a form post end
        there: signing out), or None without single sign-on; read on every response, so
        worked out once."""
        if self.oidc is None:
            return None
        parts = urlsplit(self.oidc.config.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    def external_sources(self) -> list[ExternalSource]:
        sources = []
        if self.directory_accounts is not None:
            sources.append(ExternalSource(LDAP, "LDAP", self.directory_accounts))
        if self.oidc is not None and self.oidc_accounts is not None:
            name = self.oidc.config.provider_name
            sources.append(ExternalSource(OIDC, name, self.oidc_accounts))
        return sources

    def source_accounts(self, source: str) -> DirectoryAccounts:
        for external in self.external_sources():
            if external.source == source:
                return external.accounts
        raise NotFound(N_("no account source %(source)s is configured", source=repr(source)))

    # --- the password form ----------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Principal:
        """The signed-in user, or Unauthenticated (wrong password, unknown or disabled,
        all alike); Unavailable when the directory would decide and cannot answer."""
        if self.directory is None or self.directory_accounts is None:
            return self.accounts.authenticate(username, password)
        source = self.accounts.source_of(username)
        if source not in (None, LDAP) or not _plausible(username):
            # local (and single sign-on accounts, which have no password: refused alike)
            return self.accounts.authenticate(username, password)
        account = self.directory.authenticate(username.strip(), password)
        return self.directory_accounts.sign_in(account)

    # --- single sign-on -------------------------------------------------------------

    def oidc_begin(self, redirect_uri: str, next_url: str) -> tuple[str, PendingSignIn]:
        return self._oidc().begin(redirect_uri, next_url)

    def oidc_finish(
        self, pending: PendingSignIn | None, args: Mapping[str, str]
    ) -> tuple[Principal, str]:
        """The signed-in user and the ID token (for logout at the provider)."""
        signed_in = self._oidc().finish(pending, args)
        assert self.oidc_accounts is not None
        return self.oidc_accounts.sign_in(signed_in.account), signed_in.id_token

    def oidc_logout_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        if self.oidc is None:
            return None
        return self.oidc.logout_url(id_token, post_logout_redirect_uri)

    def _oidc(self) -> OidcClient:
        if self.oidc is None:
            raise NotFound(N_("single sign-on is not configured (DOCQA_OIDC_ISSUER)"))
        return self.oidc


def _plausible(username: str) -> bool:
    # Names that could never be an account here (filter syntax, control characters) end
    # in the local check's uniform refusal without a round trip to the directory. The
    # directory's filter escapes everything anyway.
    return bool(USERNAME_PATTERN.fullmatch(username.strip()))
