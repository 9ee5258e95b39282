"""The periodic directory re-sync of the single-machine service.

In the scaled mode Celery beat runs ``docqa.directory_sync`` instead (worker/tasks.py),
and ``docqa directory sync`` runs one by hand or from cron. The loop sleeps on an event,
so stopping it is immediate, and a directory that cannot answer costs one log line and a
retry at the next interval, never a disabled account.
"""

from __future__ import annotations

import logging
import threading

from qa.accounts.directory_accounts import SyncReport
from qa.accounts.sign_in import SignIn
from qa.errors import ConfigError, DocqaError
from qa.periodic import PeriodicLoop

log = logging.getLogger(__name__)


def sync_directory(sign_in: SignIn) -> SyncReport:
    """One re-sync of every directory account (ConfigError when none is configured)."""
    if sign_in.directory is None or sign_in.directory_accounts is None:
        raise ConfigError("no directory is configured (DOCQA_LDAP_URL)")
    return sign_in.directory_accounts.sync(sign_in.directory)


class DirectorySyncLoop(PeriodicLoop):
    def __init__(self, sign_in: SignIn, interval_s: float) -> None:
        super().__init__("directory-sync", interval_s, self._once)
        self.sign_in = sign_in
        #: the last run's report (None until one finished)
        self.last: SyncReport | None = None

    def _once(self, stop: threading.Event) -> None:
        try:
            self.last = sync_directory(self.sign_in)
        except DocqaError as exc:
            log.warning("directory sync skipped: %s", exc)
