"""One model slot per process, shared fairly.

On a CPU the model serves one sequence at a time. Requests wait in a bounded queue ordered
by priority (interactive questions before batch summaries), then by arrival; a waiter learns
its position as it changes. When the queue is full a new request is refused at once with
``Busy`` (the web layer answers 503 + Retry-After) instead of waiting without bound. A
waiter whose client went away (its cancel event set) leaves the queue immediately.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from qa.errors import Busy, Cancelled

INTERACTIVE = 0
BATCH = 1


@dataclass(order=True)
class _Ticket:
    priority: int
    seq: int
    cancel: threading.Event | None = field(compare=False, default=None)


class ModelSlot:
    def __init__(self, *, max_waiting: int = 16, retry_after_s: int = 10) -> None:
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._busy = False
        self._seq = itertools.count()

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def in_use(self) -> bool:
        with self._cond:
            return self._busy

    def _position(self, ticket: _Ticket) -> int:
        return sum(1 for t in self._waiting if t < ticket) + 1

    def wait_turn(
        self, priority: int = INTERACTIVE, cancel: threading.Event | None = None
    ) -> Generator[int, None, None]:
        """Yield queue positions (1 = next) while waiting; return once the slot is ours.

        The caller must ``release()`` after the generator is exhausted; ``acquire`` wraps
        both for callers that do not report positions.
        """
        with self._cond:
            if not self._busy and not self._waiting:
                self._busy = True
                return
            if len(self._waiting) >= self.max_waiting:
                raise Busy(self.retry_after_s)
            ticket = _Ticket(priority, next(self._seq), cancel)
            heapq.heappush(self._waiting, ticket)
            self._cond.notify_all()  # waiters behind a higher priority moved back
        last = -1
        try:
            while True:
                with self._cond:
                    if not self._busy and self._waiting[0] is ticket:
                        heapq.heappop(self._waiting)
                        self._busy = True
                        self._cond.notify_all()  # the others moved up one place
                        return
                    position = self._position(ticket)
                if position != last:
                    last = position
                    yield position
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the request was cancelled while queued")
                with self._cond:
                    # Wake periodically to notice a cancel set by another thread.
                    self._cond.wait(timeout=0.1)
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    heapq.heapify(self._waiting)
                    self._cond.notify_all()
            raise

    def release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    @contextmanager
    def acquire(
        self, priority: int = INTERACTIVE, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        for _ in self.wait_turn(priority, cancel):
            pass
        try:
            yield
        finally:
            self.release()
