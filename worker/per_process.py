"""A value each worker process builds once for itself and never shares across a fork.

Celery's prefork pool forks its processes from the main one. Database pools, sockets, a
sandboxed parser's child and torch's threads must not cross a fork, so each pool process
builds its own on first use and builds them again when it finds itself in a different
process than the one that built them. What was inherited from the parent is forgotten,
never closed: closing it would close the parent's connections.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get()`` builds the value on first use in this process; ``reset()`` drops it."""

    def __init__(self, build: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._build = build
        self._close = close
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid: int | None = None

    def get(self) -> T:
        with self._lock:  # a build still running in another thread is waited for
            if self._value is None or self._pid != os.getpid():
                self._value = self._build()
                self._pid = os.getpid()
            return self._value

    def reset(self) -> None:
        """Forget the value; close it first if this very process built it."""
        with self._lock:
            value, mine = self._value, self._pid == os.getpid()
            self._value = self._pid = None
        if value is not None and mine and self._close is not None:
            self._close(value)
