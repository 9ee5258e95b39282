"""``PerProcess``: one value per process, rebuilt in a forked child, closed only by its owner."""

from __future__ import annotations

import os
import threading

from worker.per_process import PerProcess


class _Thing:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.closed = False


def test_built_once_per_process_even_by_racing_threads() -> None:
    built: list[_Thing] = []

    def build() -> _Thing:
        built.append(_Thing())
        return built[-1]

    holder = PerProcess(build)
    got: list[_Thing] = []
    threads = [threading.Thread(target=lambda: got.append(holder.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(g is built[0] for g in got)


def test_reset_closes_this_process_value_and_the_next_get_builds_anew() -> None:
    holder = PerProcess(_Thing, close=lambda t: setattr(t, "closed", True))
    first = holder.get()
    holder.reset()
    assert first.closed
    second = holder.get()
    assert second is not first and not second.closed
    holder.reset()
    holder.reset()  # nothing left to close: no error


def test_a_forked_child_builds_its_own_and_never_closes_the_parents() -> None:
    closed_in_child: list[int] = []
    holder = PerProcess(_Thing, close=lambda t: closed_in_child.append(t.pid))
    parent = holder.get()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports through the pipe
        try:
            holder.reset()  # the inherited value is forgotten, not closed
            ok = closed_in_child == []
            child = holder.get()
            ok = ok and child is not parent and child.pid == os.getpid()
            holder.reset()  # what this process built is closed
            ok = ok and closed_in_child == [os.getpid()]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert holder.get() is parent and not parent.closed
