from __future__ import annotations

import threading
import time

import pytest

from qa.errors import Busy, Cancelled
from qa.llm.slot import BATCH, INTERACTIVE, ModelSlot


def test_first_caller_gets_the_slot_without_waiting() -> None:
    slot = ModelSlot()
    assert list(slot.wait_turn()) == []
    assert slot.in_use
    slot.release()
    assert not slot.in_use


def test_waiters_are_served_by_priority_then_arrival_and_see_positions() -> None:
    slot = ModelSlot()
    order: list[str] = []
    positions: dict[str, list[int]] = {}
    started: list[threading.Thread] = []

    def waiter(name: str, priority: int) -> None:
        seen = positions.setdefault(name, [])
        for pos in slot.wait_turn(priority):
            seen.append(pos)
        order.append(name)
        time.sleep(0.05)
        slot.release()

    with slot.acquire():
        for name, prio in (("batch1", BATCH), ("ask1", INTERACTIVE), ("ask2", INTERACTIVE)):
            t = threading.Thread(target=waiter, args=(name, prio))
            t.start()
            started.append(t)
            deadline = time.monotonic() + 5
            # batch1 is first, then overtaken by each interactive question
            while positions.get("batch1", [0])[-1] != len(started) and time.monotonic() < deadline:
                time.sleep(0.005)
    for t in started:
        t.join(5)
    assert order == ["ask1", "ask2", "batch1"]
    assert positions["batch1"] == [1, 2, 3, 2, 1]
    assert positions["ask2"][0] == 2


def test_full_queue_is_refused_with_retry_after() -> None:
    slot = ModelSlot(max_waiting=1, retry_after_s=7)
    assert list(slot.wait_turn()) == []  # take the slot
    gen = slot.wait_turn()
    assert next(gen) == 1
    with pytest.raises(Busy) as info:
        list(slot.wait_turn())
    assert info.value.retry_after_s == 7
    gen.close()  # the waiter gives up: it leaves the queue
    assert slot.queue_depth == 0


def test_cancelled_waiter_leaves_the_queue() -> None:
    slot = ModelSlot()
    assert list(slot.wait_turn()) == []  # take the slot
    cancel = threading.Event()
    gen = slot.wait_turn(cancel=cancel)
    assert next(gen) == 1
    cancel.set()
    with pytest.raises(Cancelled):
        list(gen)
    assert slot.queue_depth == 0
    slot.release()
    assert list(slot.wait_turn()) == []


def test_join_reserves_the_place_at_once() -> None:
    """A burst is counted when it arrives, not when each stream gets around to waiting."""
    slot = ModelSlot(max_waiting=2, retry_after_s=4)
    holder = slot.join()
    assert holder.holding
    first, second = slot.join(), slot.join()
    assert slot.queue_depth == 2
    with pytest.raises(Busy):
        slot.join()
    second.release()  # a queued caller that never started waiting gives its place back
    assert slot.queue_depth == 1
    second.release()  # idempotent
    assert slot.queue_depth == 1
    holder.release()
    assert list(first.wait()) == []
    assert first.holding
    first.release()
    assert not slot.in_use


def test_release_while_holding_frees_the_slot_once() -> None:
    slot = ModelSlot()
    turn = slot.join()
    other = slot.join()
    turn.release()
    turn.release()  # must not free the slot a second time under the next holder
    assert list(other.wait()) == []
    assert slot.in_use
    turn.release()
    assert slot.in_use
    other.release()
    assert not slot.in_use


def test_waiting_position_is_repeated_every_heartbeat() -> None:
    slot = ModelSlot(heartbeat_s=0.2)
    holder = slot.join()
    waiter = slot.join()
    seen: list[float] = []
    started = time.monotonic()
    for position in waiter.wait():
        assert position == 1
        seen.append(time.monotonic() - started)
        if len(seen) == 3:
            break
    assert seen[2] >= 0.35
    waiter.release()
    holder.release()
    assert slot.queue_depth == 0
    assert not slot.in_use
