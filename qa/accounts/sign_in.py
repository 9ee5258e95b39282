"""Which door a sign-in goes through: the local password, or the directory.

A local account (``auth_source`` "local") is always checked locally, so the break-glass
admin works with the directory down, and nobody in the directory can take over a local
account by having the same name. Every other name goes to the directory when one is
configured: a known directory account, or someone signing in for the first time.
"""

from __future__ import annotations

from qa.accounts.audit import AuditLog
from qa.accounts.directory_accounts import DirectoryAccounts
from qa.accounts.ldap_directory import LdapConfig, LdapDirectory
from qa.accounts.users import LOCAL, USERNAME_PATTERN, AccountService, Principal
from qa.settings import Settings


class SignIn:
    def __init__(
        self,
        accounts: AccountService,
        directory: LdapDirectory | None = None,
        directory_accounts: DirectoryAccounts | None = None,
    ) -> None:
        if (directory is None) != (directory_accounts is None):
            raise ValueError("a directory needs its DirectoryAccounts, and the other way round")
        self.accounts = accounts
        self.directory = directory
        self.directory_accounts = directory_accounts

    @classmethod
    def from_settings(cls, settings: Settings, accounts: AccountService, audit: AuditLog) -> SignIn:
        """Local accounts only, or local accounts and the directory of ``DOCQA_LDAP_URL``
        (a ConfigError names a setting that cannot work)."""
        config = LdapConfig.from_settings(settings)
        if config is None:
            return cls(accounts)
        directory_accounts = DirectoryAccounts(
            accounts.db, audit, default_role=settings.ldap_default_role
        )
        return cls(accounts, LdapDirectory(config), directory_accounts)

    @property
    def has_directory(self) -> bool:
        return self.directory is not None

    def authenticate(self, username: str, password: str) -> Principal:
        """The signed-in user, or Unauthenticated (wrong password, unknown or disabled,
        all alike); Unavailable when the directory would decide and cannot answer."""
        if self.directory is None or self.directory_accounts is None:
            return self.accounts.authenticate(username, password)
        source = self.accounts.source_of(username)
        if source == LOCAL or not _plausible(username):
            return self.accounts.authenticate(username, password)
        account = self.directory.authenticate(username.strip(), password)
        return self.directory_accounts.sign_in(account)


def _plausible(username: str) -> bool:
    # Names that could never be an account here (filter syntax, control characters) end
    # in the local check's uniform refusal without a round trip to the directory. The
    # directory's filter escapes everything anyway.
    return bool(USERNAME_PATTERN.fullmatch(username.strip()))
