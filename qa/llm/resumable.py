"""Batch generation that gives the model to any waiting question and resumes afterwards.

A batch caller (a summary window) may need a minute of prefill and decode on a CPU; a
question must not wait that long. So a batch generation holds the model slot at BATCH
priority for one step at a time, and when a question queues meanwhile it stops at its next
token (or prefill chunk), the question goes first, and the generation continues from what
it had: the prompt plus the tokens so far, which the KV cache turns back into its state, so
almost nothing is computed twice. Two ways to be stopped, one way to go on:

* in-process, ``ModelSlot.interactive_waiting`` is seen here and the stream is cancelled;
  it ends as "cancelled" and continues from this object's ``KVSessionCache`` snapshot;
* with a batch ``RemoteGenerator`` the generation worker stops it for a question it was
  sent and ends it as "preempted" (``qa.llm.remote``); the continuation is a new batch
  request that the worker's own KV cache continues where it stopped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from qa.errors import Busy
from qa.llm.generate import ChatMessage, FinishReason, Generator, Prompt, TokenEvent
from qa.llm.kv_cache import KVSessionCache
from qa.llm.sampling import SamplingParams
from qa.llm.slot import BATCH, ModelSlot, Turn

#: how a stopped generation ends: we stopped it for a question queued in this process's
#: slot ("cancelled"), or a generation worker did for one it was sent ("preempted")
_GAVE_WAY = ("cancelled", "preempted")


class Control(Protocol):
    """What a batch caller offers: a cancel event, ``poll`` (may set it), ``check`` (raises
    ``Cancelled`` once it is set). ``qa.summaries.control.JobControl`` is one."""

    cancel: threading.Event

    def poll(self) -> None: ...

    def check(self) -> None: ...


@dataclass
class BatchTimings:
    """What batch generations cost, summed over every call that is given it."""

    generations: int = 0
    generation_s: float = 0.0
    queue_wait_s: float = 0.0
    #: generations that gave the slot to a question and continued afterwards
    preemptions: int = 0


@dataclass
class _Progress:
    """One generation so far: the prompt of its next step, its tokens and its text."""

    prompt: Prompt
    produced: list[int] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


def _join(slot: ModelSlot, control: Control) -> Turn:
    while True:
        control.check()
        try:
            return slot.join(BATCH, control.cancel)
        except Busy:
            # The queue is full of questions: they go first; try again shortly.
            control.cancel.wait(1.0)


@contextmanager
def hold(slot: ModelSlot, control: Control) -> Iterator[float]:
    """Hold the model slot (BATCH priority) for one step; yields the seconds waited.

    Given back after every step, so a question that queued meanwhile goes next. Batch
    work that is not generation (embedding many sentences) takes its turn here too.
    """
    queued = time.perf_counter()
    turn = _join(slot, control)
    try:
        for _ in turn.wait():
            control.poll()
        yield time.perf_counter() - queued
    finally:
        turn.release()


class ResumableGenerator:
    """A ``Generator`` used at batch priority, one step per turn of the model slot."""

    def __init__(
        self, generator: Generator, slot: ModelSlot, *, kv_cache_bytes: int = 2 << 30
    ) -> None:
        self.generator = generator
        self.slot = slot
        # The KV of a generation interrupted for a question (one at a time), and of the
        # system-prompt prefix that every batch prompt of a kind shares.
        self.kv = KVSessionCache(max_bytes=kv_cache_bytes)

    def generate(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        control: Control,
        timings: BatchTimings,
    ) -> str:
        """The whole text of one generation, however often it gave way to a question."""
        key = f"batch-{uuid.uuid4().hex}"
        progress = _Progress(messages)
        try:
            while self._step(progress, params, control, timings, key):
                timings.preemptions += 1
                progress.prompt = self.generator.encode(messages) + progress.produced
        finally:
            self.kv.drop_chat(key)  # the prefix snapshot stays for the next prompt
        timings.generations += 1
        return "".join(progress.parts)

    def _step(
        self,
        progress: _Progress,
        params: SamplingParams,
        control: Control,
        timings: BatchTimings,
        key: str,
    ) -> bool:
        """One turn of the slot; whether the generation gave way and has more to do."""
        with hold(self.slot, control) as waited:
            timings.queue_wait_s += waited
            started = time.perf_counter()
            finish = self._stream(progress, params, control, key)
            timings.generation_s += time.perf_counter() - started
        control.check()  # a cancelled caller ends here, not in a resumed step
        return finish in _GAVE_WAY and len(progress.produced) < params.max_new_tokens

    def _stream(
        self, progress: _Progress, params: SamplingParams, control: Control, key: str
    ) -> FinishReason | None:
        """Run the step's stream until it ends; stop it when the caller or a question must."""
        stop = threading.Event()
        finish: FinishReason | None = None
        for event in self._events(progress, params, stop, key):
            progress.parts.append(event.text)
            progress.produced.extend(event.token_ids)
            finish = event.finish_reason or finish
            control.poll()
            if control.cancel.is_set() or self.slot.interactive_waiting:
                stop.set()  # at the next token or prefill chunk
        return finish

    def _events(
        self, progress: _Progress, params: SamplingParams, stop: threading.Event, key: str
    ) -> Iterator[TokenEvent]:
        return self.generator.stream(
            progress.prompt,
            max_new_tokens=max(1, params.max_new_tokens - len(progress.produced)),
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            seed=params.seed,
            cancel=stop,
            session_cache=self.kv,
            chat_id=key,
        )
