"""A job run every so often on a thread of its own, in the single-machine service (the
directory re-sync, the synced folders' scans). The thread sleeps on an event, so stopping
is immediate; one failing run costs a log line, and the next interval tries again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

log = logging.getLogger(__name__)


class PeriodicLoop:
    def __init__(self, name: str, interval_s: float, run: Callable[[threading.Event], None]):
        self.name = name
        self.interval_s = interval_s
        self._job = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._job(self._stop)
            except Exception:  # the loop must outlive one bad run
                log.exception("%s failed", self.name)
