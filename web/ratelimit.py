"""Request limits and the sign-in lockout, counted alike by every web process.

Counters live in a storage of the ``limits`` library (the one under Flask-Limiter): process
memory for the embedded server, Redis when the settings name one (scaled mode: by default
the broker's Redis), so N web processes behind a proxy share one count instead of each
allowing its own share.

- ``RateLimiter.hit(kind, key, per_minute)``: a moving window of one minute per
  (kind, key), e.g. ("sign_in", "ip:10.0.0.7") or ("question", "user:12"). Over the limit
  the caller gets ``RateLimited`` with the seconds until the oldest hit leaves the window
  (web: 429 + Retry-After).
- ``SignInLockout``: per typed username, on top of the per-address limit. After
  ``after`` failures in a row the name is locked for ``base_s`` seconds, doubling with
  every further failure up to ``max_s``; while locked no password is checked at all. The
  count is kept for any name typed, existing or not, so a lock reveals nothing about which
  accounts exist. A successful sign-in clears it.

A storage that does not answer (Redis down) is ``Unavailable`` (503): limits that cannot
be counted are not silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import TypeVar

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from qa.errors import RateLimited, Unavailable
from qa.settings import Settings

T = TypeVar("T")

#: keys of docqa's counters in a shared Redis start with this
KEY_PREFIX = "docqa-limits"
#: failures older than this (counted from the first of a run) are forgotten
LOCKOUT_MEMORY_S = 3600


def limit_storage_url(settings: Settings) -> str:
    """Where the counters live: the configured URL, else the broker's Redis, else memory."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    broker = settings.broker_url or ""
    if broker.startswith(("redis://", "rediss://", "redis+unix://")):
        return broker
    return "memory://"


def build_limit_storage(settings: Settings) -> Storage:
    url = limit_storage_url(settings)
    if url.startswith("memory://"):
        return MemoryStorage()
    # Short timeouts: every request waits on the limiter, so a hung Redis must fail fast.
    return RedisStorage(url, key_prefix=KEY_PREFIX, socket_timeout=2.0, socket_connect_timeout=2.0)


def _guarded(storage: Storage, call: Callable[..., T], *args: object) -> T:
    """``call(*args)`` on the storage, its backend's errors translated at this one boundary."""
    try:
        return call(*args)
    except storage.base_exceptions as exc:
        raise Unavailable(
            "the rate-limit store is not answering; try again shortly", retry_after_s=5
        ) from exc


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._window = MovingWindowRateLimiter(storage)

    def hit(self, kind: str, key: str, per_minute: int) -> None:
        """Count one hit of the (kind, key) window or raise ``RateLimited``."""
        item = RateLimitItemPerMinute(per_minute)
        if _guarded(self.storage, self._window.hit, item, kind, key):
            return
        stats = _guarded(self.storage, self._window.get_window_stats, item, kind, key)
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))


class SignInLockout:
    def __init__(self, storage: Storage, *, after: int, base_s: int, max_s: int) -> None:
        self.storage = storage
        self.after = after
        self.base_s = base_s
        self.max_s = max(max_s, base_s)

    def check(self, username: str) -> None:
        """``RateLimited`` while the name is locked (before any password is checked)."""
        lock = self._key("lock", username)
        if _guarded(self.storage, self.storage.get, lock) <= 0:
            return
        until = _guarded(self.storage, self.storage.get_expiry, lock)
        raise RateLimited(max(1, math.ceil(until - time.time())))

    def failed(self, username: str) -> int:
        """Count a failed sign-in; the seconds the name is now locked for (0: not locked)."""
        fail = self._key("fail", username)
        failures = _guarded(self.storage, self.storage.incr, fail, LOCKOUT_MEMORY_S)
        if failures < self.after:
            return 0
        seconds = min(self.max_s, self.base_s << min(failures - self.after, 30))
        lock = self._key("lock", username)
        _guarded(self.storage, self.storage.clear, lock)
        _guarded(self.storage, self.storage.incr, lock, seconds)
        return seconds

    def succeeded(self, username: str) -> None:
        for kind in ("fail", "lock"):
            _guarded(self.storage, self.storage.clear, self._key(kind, username))

    @staticmethod
    def _key(kind: str, username: str) -> str:
        # Names compare case-insensitively at sign-in; hashed so a key holds no typed text.
        digest = hashlib.sha256(username.strip().lower().encode("utf-8", "surrogatepass"))
        return f"sign_in_{kind}/{digest.hexdigest()[:32]}"
