"""Per-user request limits: one token bucket per (user, kind), kept in process memory.

A bucket holds ``per_minute`` tokens and refills continuously, so a burst up to the limit
is allowed and then one request per ``60 / per_minute`` seconds. Over the limit the caller
gets ``RateLimited`` with the seconds until the next token (web: 429 + Retry-After).
In-memory is right for the embedded single-process server; several web processes each
count their own share.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from qa.errors import RateLimited

#: buckets untouched this long are dropped, so memory stays bounded by active users
_IDLE_S = 600.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()
        self._last_sweep = self._clock()

    def hit(self, kind: str, key: str, per_minute: int) -> None:
        """Take one token from the (kind, key) bucket or raise ``RateLimited``."""
        now = self._clock()
        rate = per_minute / 60.0
        with self._lock:
            self._sweep(now)
            bucket = self._buckets.get((kind, key))
            if bucket is None:
                bucket = self._buckets[(kind, key)] = _Bucket(float(per_minute), now)
            bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / rate
        raise RateLimited(max(1, math.ceil(wait)))

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        stale = [k for k, b in self._buckets.items() if now - b.updated > _IDLE_S]
        for k in stale:
            del self._buckets[k]
