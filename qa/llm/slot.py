"""One model slot per process, shared fairly.

On a CPU the model serves one sequence at a time. With generation on workers the slot has
one place per generation worker (``capacity``), so the web never queues more sequences in
the broker than workers can run. Requests wait in a bounded queue ordered
by priority (interactive questions before batch summaries), then by arrival; a waiter learns
its position as it changes. When the queue is full a new request is refused at once with
``Busy`` (the web layer answers 503 + Retry-After) instead of waiting without bound. A
waiter whose client went away (its cancel event set) leaves the queue immediately.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from qa.errors import Busy, Cancelled
from qa.messages import N_

INTERACTIVE = 0
BATCH = 1


@dataclass(order=True)
class _Ticket:
    priority: int
    seq: int
    cancel: threading.Event | None = field(compare=False, default=None)


class ModelSlot:
    def __init__(
        self,
        *,
        max_waiting: int = 16,
        retry_after_s: int = 10,
        heartbeat_s: float = 1.0,
        capacity: int = 1,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.max_waiting = max_waiting
        #: sequences that may run at once (1 in-process; the number of generation workers)
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        #: a waiter's position is reported again after this long even if unchanged, so a
        #: streaming caller writes to its client and notices one that went away
        self.heartbeat_s = heartbeat_s
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._running = 0
        self._seq = itertools.count()

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def interactive_waiting(self) -> bool:
        """Whether an interactive request waits: a batch holder then gives the slot up at
        its next token instead of finishing its whole step (see ``qa.llm.resumable``)."""
        with self._cond:
            return bool(self._waiting) and self._waiting[0].priority == INTERACTIVE

    @property
    def in_use(self) -> bool:
        with self._cond:
            return self._running > 0

    def join(self, priority: int = INTERACTIVE, cancel: threading.Event | None = None) -> Turn:
        """Take the slot or a place in the queue now, or raise ``Busy`` now.

        Reserving the place before a stream starts is what lets the web layer answer a
        burst over capacity with 503 instead of an error inside an already-started stream.
        """
        with self._cond:
            if self._running < self.capacity and not self._waiting:
                self._running += 1
                return Turn(self, None)
            if len(self._waiting) >= self.max_waiting:
                raise Busy(self.retry_after_s)
            ticket = _Ticket(priority, next(self._seq), cancel)
            heapq.heappush(self._waiting, ticket)
            self._cond.notify_all()  # waiters behind a higher priority moved back
            return Turn(self, ticket)

    def wait_turn(
        self, priority: int = INTERACTIVE, cancel: threading.Event | None = None
    ) -> Generator[int, None, None]:
        """Yield queue positions (1 = next) while waiting; return once the slot is ours.

        The caller must ``release()`` after the generator is exhausted; ``acquire`` wraps
        both for callers that do not report positions.
        """
        turn = self.join(priority, cancel)
        try:
            yield from turn.wait()
        except BaseException:
            turn.release()
            raise

    def release(self) -> None:
        with self._cond:
            self._running = max(0, self._running - 1)
            self._cond.notify_all()

    def _position(self, ticket: _Ticket) -> int:
        return sum(1 for t in self._waiting if t < ticket) + 1

    def _leave(self, ticket: _Ticket) -> None:
        with self._cond:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
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


class Turn:
    """One caller's claim on the slot: holding it, or a place in the queue.

    ``release`` gives back whichever it is, exactly once, so every path (done, error,
    client gone, stream never started) can call it without double-freeing the slot.
    """

    def __init__(self, slot: ModelSlot, ticket: _Ticket | None) -> None:
        self._slot = slot
        self._ticket = ticket
        self._holding = ticket is None
        self._released = False

    @property
    def holding(self) -> bool:
        return self._holding

    def wait(self) -> Generator[int, None, None]:
        """Yield positions while queued (again every heartbeat); return holding the slot."""
        ticket = self._ticket
        if self._holding or ticket is None:
            return
        slot = self._slot
        last, last_at = -1, 0.0
        try:
            while True:
                with slot._cond:
                    if self._released:
                        raise Cancelled(N_("the request gave up its place"))
                    if slot._running < slot.capacity and slot._waiting[0] is ticket:
                        heapq.heappop(slot._waiting)
                        slot._running += 1
                        self._holding = True
                        slot._cond.notify_all()  # the others moved up one place
                        return
                    position = slot._position(ticket)
                now = time.monotonic()
                if position != last or now - last_at >= slot.heartbeat_s:
                    last, last_at = position, now
                    yield position
                if ticket.cancel is not None and ticket.cancel.is_set():
                    raise Cancelled(N_("the request was cancelled while queued"))
                with slot._cond:
                    # Wake periodically to notice a cancel set by another thread.
                    slot._cond.wait(timeout=0.1)
        except BaseException:
            slot._leave(ticket)
            raise

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._holding:
            self._slot.release()
        elif self._ticket is not None:
            self._slot._leave(self._ticket)
