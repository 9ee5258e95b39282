"""Batch yields to interactive: time to first token of questions alone vs during a summary.

    python -m tests.bench.bench_priority [--questions 12] [--layers 4] [--window-new 64]

A tiny Qwen3 (random weights, the test tokenizer) is built through ``qa.llm.build`` as in
``bench_llm``; the sample documents are ingested into a temporary data dir. Then, with ONE
model and ONE slot shared by the answer service and the summary service (as ``docqa serve``
wires them):

1. questions alone, one after another: client-side time to first token (TTFT);
2. the same questions while a collection summary runs continuously, each asked at a random
   moment: TTFT again.

A summary takes the slot (BATCH priority) for each window's generation and gives it back
afterwards; when a question queues meanwhile, the window stops at its next token, the
question goes first, and the window resumes from a KV snapshot. So a question's wait for the
slot stays below one window's generation (about one decode step, or the rest of a prefill),
and the TTFT ratio near 1 + that. What remains is CPU sharing: the question's retrieval
runs on the same cores as the summary's generation. The figure for a summary that would
hold the slot for a whole pass is printed beside. The model never stops early (random
weights), so every generation has a fixed length. Timings on a shared machine vary from run
to run; questions alone and during a summary are interleaved so both see the same load.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "What is the hotel limit in London?",
    "How many days of annual leave do employees get?",
    "How long must passwords be?",
    "Who approves expense reports?",
    "Is alcohol reimbursed?",
    "How many days may employees work remotely?",
]


def _setup(work: Path, layers: int, threads: int, context: int) -> tuple[Any, Any, int]:
    from ingest.factory import build_ingest_service
    from ingest.runner import run_ingest
    from qa.answering.assembly import build_answer_service
    from qa.llm.build import build_model
    from qa.llm.generate import OnnxQwenGenerator
    from qa.settings import Settings
    from qa.store.catalog import get_collection
    from tests.qa.llm.tiny_qwen import make_tiny_qwen3

    settings = Settings(data_dir=work / "var")
    hf = make_tiny_qwen3(work / "hf", layers=layers, max_positions=context)
    build_model(hf, settings.llm_dir, precision="int8")
    service = build_ingest_service(settings)
    try:
        run_ingest(service, [REPO / "samples" / "docs"], "handbook")
        with service.db.session() as session:
            collection_id = get_collection(session, "handbook").id
    finally:
        service.close()
    generator = OnnxQwenGenerator(settings.llm_dir, threads=threads)
    generator.stop_ids = frozenset()  # random weights: never stop early, fixed lengths
    answers = build_answer_service(
        settings, db=service.db, embedder=service.embedder, generator=generator
    )
    return answers, generator, collection_id


def _ttft(answers: Any, question: str, collection_id: int) -> tuple[float, float]:
    """(client-side time to first token, of which waiting for the slot), in seconds."""
    from qa.answering.answer_service import AskOptions
    from qa.answering.events import Done, ErrorEvent, Token

    started = time.perf_counter()
    first: float | None = None
    queue_wait = 0.0
    for event in answers.ask(question, [collection_id], AskOptions(max_tokens=16, temperature=0)):
        if isinstance(event, Token) and first is None:
            first = time.perf_counter() - started
        if isinstance(event, Done):
            queue_wait = (event.queue_wait_ms or 0.0) / 1000
        if isinstance(event, ErrorEvent):
            raise RuntimeError(event.message)
    assert first is not None
    return first, queue_wait


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Pausable:
    """A ``JobControl`` whose summary can be parked between two windows.

    ``check`` runs only between windows, never while the summary holds the slot (unlike
    ``poll``, which also runs between tokens), so a parked summary blocks nobody.
    """

    def __new__(cls, stop: threading.Event) -> Any:
        from qa.summaries.control import JobControl

        class Control(JobControl):
            def __init__(self) -> None:
                super().__init__(stop)
                self.resume = threading.Event()
                self.resume.set()
                self.parked = threading.Event()

            def check(self) -> None:
                if not self.resume.is_set():
                    self.parked.set()
                    while not self.resume.wait(0.02) and not self.cancel.is_set():
                        pass
                    self.parked.clear()
                super().check()

        return Control()


class _Summaries:
    """Collection summaries one after another on a thread, until stopped."""

    def __init__(self, summaries: Any, collection_id: int) -> None:
        self.stop = threading.Event()
        self.windows: list[float] = []  # seconds per window generation
        self.passes: list[float] = []  # generation seconds of a whole collection summary
        self.control = _Pausable(self.stop)
        self.thread = threading.Thread(
            target=self._loop, args=(summaries, collection_id), name="summary", daemon=True
        )

    def _loop(self, summaries: Any, collection_id: int) -> None:
        from qa.errors import Cancelled

        while not self.stop.is_set():
            try:
                result = summaries.summarize_collection(collection_id, control=self.control)
            except Cancelled:
                return
            t = result["timings"]
            self.windows.append(t["generation_s"] / max(t["generations"], 1))
            self.passes.append(t["generation_s"])

    def __enter__(self) -> _Summaries:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(600)

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.control.resume.clear()
        try:
            assert self.control.parked.wait(120), "the summary did not reach a window boundary"
            yield
        finally:
            self.control.resume.set()


def _quiet(running: _Summaries, answers: Any, question: str, collection_id: int) -> float:
    """TTFT with the summary parked between two windows: the same process, machine load
    and caches, only no summary running."""
    with running.paused():
        return _ttft(answers, question, collection_id)[0]


def run(
    questions: int, layers: int, window_new: int, threads: int, context: int
) -> dict[str, float]:
    """Questions alone and during a summary, interleaved (alone, during, alone, ...), so
    both halves see the same background load on a shared machine."""
    from qa.summaries.options import SummaryOptions
    from qa.summaries.service import SummaryService

    with tempfile.TemporaryDirectory(prefix="bench_priority_") as tmp:
        answers, _, collection_id = _setup(Path(tmp), layers, threads, context)
        summaries = SummaryService.from_answers(answers, SummaryOptions(max_new_tokens=window_new))
        assert summaries.slot is answers.slot
        for q in QUESTIONS[:2]:  # warm-up: indexes, onnxruntime, tokenizer, embedder
            _ttft(answers, q, collection_id)
        # One pass alone: how long a summary that never gave the slot back would hold it.
        solo = summaries.summarize_collection(collection_id)["timings"]
        rng = random.Random(0)
        alone: list[float] = []
        during: list[tuple[float, float]] = []
        windows: list[float] = [solo["generation_s"] / max(solo["generations"], 1)]
        with _Summaries(summaries, collection_id) as running:
            for i in range(questions):
                question = QUESTIONS[i % len(QUESTIONS)]
                time.sleep(rng.uniform(0.05, 0.3))  # a random point of some window
                during.append(_ttft(answers, question, collection_id))
                alone.append(_quiet(running, answers, question, collection_id))
            windows += running.windows

    ttft_during = [t for t, _ in during]
    waits = [w for _, w in during]
    med_alone, med_during = statistics.median(alone), statistics.median(ttft_during)
    window_s = statistics.median(windows)
    return {
        "questions": questions,
        "ttft_alone_median_s": med_alone,
        "ttft_alone_p95_s": _pct(alone, 0.95),
        "ttft_during_median_s": med_during,
        "ttft_during_p95_s": _pct(ttft_during, 0.95),
        "rest_during_median_s": statistics.median(t - w for t, w in during),
        "slot_wait_median_s": statistics.median(waits),
        "slot_wait_max_s": max(waits),
        "window_generation_median_s": window_s,
        "window_generation_max_s": max(windows),
        "windows_per_pass": solo["generations"],
        "pass_generation_s": solo["generation_s"],
        "ratio_median": med_during / med_alone,
        "bound_one_window": (med_alone + window_s) / med_alone,
        "ratio_if_not_yielding": (med_alone + solo["generation_s"] / 2) / med_alone,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--layers", type=int, default=4, help="layers of the tiny model")
    ap.add_argument("--window-new", type=int, default=64, help="tokens per summary window")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=1024, help="the tiny model's context")
    args = ap.parse_args(argv)
    r = run(args.questions, args.layers, args.window_new, args.threads, args.context)
    ms = {k: v * 1000 for k, v in r.items() if k.endswith("_s")}
    print(
        f"tiny Qwen3 ({args.layers} layers, int8), {args.threads} threads, {r['questions']}"
        f" questions alone and {r['questions']} during summaries (interleaved), summary"
        f" windows of {args.window_new} new tokens"
    )
    print(
        f"  TTFT alone             median {ms['ttft_alone_median_s']:7.1f} ms"
        f"   p95 {ms['ttft_alone_p95_s']:7.1f} ms"
    )
    print(
        f"  TTFT during a summary  median {ms['ttft_during_median_s']:7.1f} ms"
        f"   p95 {ms['ttft_during_p95_s']:7.1f} ms"
    )
    print(
        f"  waiting for the slot   median {ms['slot_wait_median_s']:7.1f} ms"
        f"   max {ms['slot_wait_max_s']:7.1f} ms"
        f"   (one window's generation: median {ms['window_generation_median_s']:.1f} ms,"
        f" max {ms['window_generation_max_s']:.1f} ms)"
    )
    print(
        f"  TTFT minus the slot wait, during: median {ms['rest_during_median_s']:.1f} ms"
        " (retrieval and prefill share the CPU with the summary's running window)"
    )
    print(
        f"  TTFT ratio during/alone {r['ratio_median']:.2f}"
        f"  (1 + one window: {r['bound_one_window']:.2f};"
        f" if a summary held the slot for its whole pass of {r['windows_per_pass']}"
        f" generations, {r['pass_generation_s']:.2f} s: ~{r['ratio_if_not_yielding']:.1f})"
    )


if __name__ == "__main__":
    main()
