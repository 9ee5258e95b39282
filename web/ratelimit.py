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

A shared storage that does not answer (Redis down) is replaced by this process's memory
until it answers again (``LimitStore``; Flask-Limiter's in-memory fallback): the limits
still hold, per process as in embedded mode, and the web app keeps serving what does not
need Redis (reading documents and chats, uploads kept for later) instead of answering every
request with a 503.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from qa.errors import RateLimited
from qa.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: keys of docqa's counters in a shared Redis start with this
KEY_PREFIX = "docqa-limits"
#: failures older than this (counted from the first of a run) are forgotten
LOCKOUT_MEMORY_S = 3600
#: while the shared storage is down, how long to count in memory before trying it again
RECHECK_S = 5.0


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


class LimitStore:
    """The storage counters go to: the shared one, or this process's memory while the
    shared one does not answer (tried again every ``RECHECK_S``)."""

    def __init__(self, shared: Storage) -> None:
        self.shared = shared
        self.local = shared if isinstance(shared, MemoryStorage) else MemoryStorage()
        self._shared_window = MovingWindowRateLimiter(shared)
        self._local_window = MovingWindowRateLimiter(self.local)
        self._shared_down_until = 0.0

    def run(self, call: Callable[[Storage, MovingWindowRateLimiter], T]) -> T:
        """``call(storage, its moving window)`` on the shared storage, else locally."""
        if time.monotonic() >= self._shared_down_until:
            try:
                return call(self.shared, self._shared_window)
            except self.shared.base_exceptions as exc:
                # Short socket timeouts (build_limit_storage) keep this from stalling requests
                log.warning("rate-limit store not answering, counting in process: %s", exc)
                self._shared_down_until = time.monotonic() + RECHECK_S
        return call(self.local, self._local_window)


class RateLimiter:
    def __init__(self, store: LimitStore) -> None:
        self.store = store

    def hit(self, kind: str, key: str, per_minute: int) -> None:
        """Count one hit of the (kind, key) window or raise ``RateLimited``."""
        item = RateLimitItemPerMinute(per_minute)

        def count(_: Storage, window: MovingWindowRateLimiter) -> float | None:
            if window.hit(item, kind, key):
                return None
            return window.get_window_stats(item, kind, key).reset_time

        reset_time = self.store.run(count)
        if reset_time is not None:
            raise RateLimited(max(1, math.ceil(reset_time - time.time())))


class SignInLockout:
    def __init__(self, store: LimitStore, *, after: int, base_s: int, max_s: int) -> None:
        self.store = store
        self.after = after
        self.base_s = base_s
        self.max_s = max(max_s, base_s)

    def check(self, username: str) -> None:
        """``RateLimited`` while the name is locked (before any password is checked)."""
        lock = self._key("lock", username)

        def locked_until(storage: Storage, _: MovingWindowRateLimiter) -> float | None:
            return storage.get_expiry(lock) if storage.get(lock) > 0 else None

        until = self.store.run(locked_until)
        if until is not None:
            raise RateLimited(max(1, math.ceil(until - time.time())))

    def failed(self, username: str) -> int:
        """Count a failed sign-in; the seconds the name is now locked for (0: not locked)."""
        fail, lock = self._key("fail", username), self._key("lock", username)

        def count(storage: Storage, _: MovingWindowRateLimiter) -> int:
            failures = storage.incr(fail, LOCKOUT_MEMORY_S)
            if failures < self.after:
                return 0
            seconds = min(self.max_s, self.base_s << min(failures - self.after, 30))
            # The storage has no "set": a lock is a counter that expires after `seconds`
            storage.clear(lock)
            storage.incr(lock, seconds)
            return seconds

        return self.store.run(count)

    def succeeded(self, username: str) -> None:
        keys = [self._key(kind, username) for kind in ("fail", "lock")]

        def clear(storage: Storage, _: MovingWindowRateLimiter) -> None:
            for key in keys:
                storage.clear(key)

        self.store.run(clear)

    @staticmethod
    def _key(kind: str, username: str) -> str:
        # Names compare case-insensitively at sign-in; hashed so a key holds no typed text.
        digest = hashlib.sha256(username.strip().lower().encode("utf-8", "surrogatepass"))
        return f"sign_in_{kind}/{digest.hexdigest()[:32]}"
