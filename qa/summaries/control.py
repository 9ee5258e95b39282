"""A summary while it runs: how it reports progress, learns it should stop, and counts.

``Run`` bundles the three things every step of a summary needs (its options, its control,
its counters), so the windowing, map/reduce and synthesis steps take one argument for them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from qa.errors import Cancelled
from qa.llm.resumable import BatchTimings
from qa.messages import N_
from qa.summaries.options import SummaryOptions


class JobControl:
    """How a running summary reports progress and learns that it should stop.

    This base class keeps both to itself (the CLI); the job runner's subclass writes
    progress to the jobs table and turns a cancel request stored there into ``cancel``.
    It is the ``qa.llm.resumable.Control`` of the summary's generations.
    """

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.cancel = cancel or threading.Event()

    def progress(self, fraction: float) -> None:
        """Called after every window (0..1, never decreasing)."""

    def poll(self) -> None:
        """Look for a cancel request made elsewhere and set ``cancel`` (cheap, rate-limited)."""

    def check(self) -> None:
        self.poll()
        if self.cancel.is_set():
            raise Cancelled(N_("the summary was cancelled"))


class Part(JobControl):
    """A share [lo, hi) of a parent's progress (one document of a collection)."""

    def __init__(self, parent: JobControl, lo: float, hi: float) -> None:
        super().__init__(parent.cancel)
        self.parent, self.lo, self.hi = parent, lo, hi

    def progress(self, fraction: float) -> None:
        self.parent.progress(self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0))

    def poll(self) -> None:
        self.parent.poll()


@dataclass
class Stats(BatchTimings):
    """The model's costs (``BatchTimings``) and the summary's own counts: its timings."""

    started: float = field(default_factory=time.perf_counter)
    windows: int = 0
    #: windows the model said nothing usable about: their sentences were quoted instead
    fallback_windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_s": round(time.perf_counter() - self.started, 3),
            "windows": self.windows,
            "generations": self.generations,
            "generation_s": round(self.generation_s, 3),
            "queue_wait_s": round(self.queue_wait_s, 3),
            "fallback_windows": self.fallback_windows,
            "preemptions": self.preemptions,
        }


@dataclass(frozen=True)
class Run:
    """One summary being made; a collection's documents share its counters."""

    options: SummaryOptions
    control: JobControl
    stats: Stats = field(default_factory=Stats)

    def part(self, lo: float, hi: float) -> Run:
        """The same run for one share [lo, hi) of the progress."""
        return replace(self, control=Part(self.control, lo, hi))
