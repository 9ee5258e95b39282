"""Scaled mode: a question's wait for the generation worker while summaries run there.

    python -m tests.bench.bench_priority_scaled [--questions 10] [--layers 4] [--window 800]

One real ``docqa worker --queues generate`` (its own Redis, a tiny Qwen3 with random weights
built through ``qa.llm.build``) serves everything; this process plays the web (questions,
``RemoteGenerator``) and the summarize worker (batch generations of ``--window`` tokens one
after another, each continued after a preemption from prompt + tokens so far, which is what
``SummaryService`` does). Client-side time to first token (TTFT) of the same question:

1. alone (no batch work);
2. while batch requests run, sent as summaries send them (``batch=True``: batch priority,
   preempted at the next token when a question waits);
3. while the same requests run sent as ordinary requests (no priority, no preemption): the
   question waits for the rest of the running generation, as it did when one process
   consumed both queues and a summary held it.

Phases are interleaved question by question (alone, preemptible, plain, alone, ...), so all
three see the same machine load. Printed: medians, p95, and ratios to alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [
    {"role": "system", "content": "You answer from the sources."},
    {"role": "user", "content": "What is the hotel limit in London?"},
]
SUMMARY = [
    {"role": "system", "content": "Summarize the passage in three statements."},
    {"role": "user", "content": "[Page 1] Hotels in London are reimbursed up to a limit. " * 8},
]


class _BatchLoad:
    """Batch generations back to back on a thread, continued after each preemption."""

    def __init__(self, generator: Any, window: int) -> None:
        self.generator = generator
        self.window = window
        self.stop = threading.Event()
        self.preemptions = 0
        self.generations = 0
        self.running = threading.Event()  # a request is on the worker (first token seen)
        self.thread = threading.Thread(target=self._loop, name="batch-load", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            prompt: Any = SUMMARY
            produced: list[int] = []
            while not self.stop.is_set():
                finish = None
                for event in self.generator.stream(
                    prompt,
                    max_new_tokens=self.window - len(produced),
                    temperature=0.0,
                    chat_id="bench-summary",
                ):
                    self.running.set()
                    produced.extend(event.token_ids)
                    finish = event.finish_reason or finish
                    if self.stop.is_set():
                        break
                self.running.clear()
                if finish != "preempted" or len(produced) >= self.window:
                    break
                self.preemptions += 1
                prompt = self.generator.encode(SUMMARY) + produced
            self.generations += 1

    def __enter__(self) -> _BatchLoad:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(120)


def _ttft(generator: Any) -> float:
    started = time.perf_counter()
    first: float | None = None
    for event in generator.stream(MESSAGES, max_new_tokens=4, temperature=0.0):
        if first is None and event.token_ids:
            first = time.perf_counter() - started
    assert first is not None
    return first


def _during(question: Any, batch: Any, window: int) -> float:
    with _BatchLoad(batch, window) as load:
        assert load.running.wait(60), "the batch request never started"
        time.sleep(0.1)  # somewhere inside the running generation
        return _ttft(question)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(questions: int, layers: int, window: int) -> dict[str, Any]:
    from qa.llm.build import build_model
    from qa.llm.remote import RemoteGenerator
    from tests.qa.llm.tiny_qwen import make_tiny_qwen3
    from tests.worker.celery_support import RedisServer, wait_until

    with tempfile.TemporaryDirectory(prefix="bench_priority_scaled_") as tmp:
        work = Path(tmp)
        model = work / "model"
        hf = make_tiny_qwen3(work / "hf", layers=layers, max_positions=window + 512)
        build_model(hf, model, precision="int8")
        with RedisServer(work / "redis") as redis_server:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
            env.update(
                DOCQA_BROKER_URL=redis_server.url(),
                DOCQA_MODEL_DIR=str(model),
                DOCQA_LLM_THREADS="1",  # the other core plays web and summarize worker
                PYTHONPATH=str(REPO),
            )
            log = work / "worker.log"
            cmd = [sys.executable, "-m", "cli.main", "--data-dir", str(work / "var")]
            cmd += ["worker", "--queues", "generate", "--concurrency", "1"]
            with log.open("wb") as out:
                worker = subprocess.Popen(
                    cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            try:
                wait_until(lambda: " ready." in log.read_text(errors="replace"), 120, "worker")
                url = redis_server.url()
                question = RemoteGenerator(model, url, queue_timeout_s=60)
                preemptible = RemoteGenerator(model, url, queue_timeout_s=600, batch=True)
                plain = RemoteGenerator(model, url, queue_timeout_s=600)
                for _ in range(3):  # warm-up: the worker's model load, sessions, caches
                    _ttft(question)
                started = time.perf_counter()
                one = list(plain.stream(SUMMARY, max_new_tokens=window, temperature=0.0))
                window_s = time.perf_counter() - started
                assert one[-1].finish_reason == "length"
                alone: list[float] = []
                yielding: list[float] = []
                fifo: list[float] = []
                for _ in range(questions):
                    alone.append(_ttft(question))
                    yielding.append(_during(question, preemptible, window))
                    fifo.append(_during(question, plain, window))
            finally:
                worker.terminate()
                worker.wait(30)
    med = {name: statistics.median(v) for name, v in (("alone", alone), ("yielding", yielding))}
    med["fifo"] = statistics.median(fifo)
    return {
        "questions": questions,
        "window_s": window_s,
        "median_s": med,
        "p95_s": {
            "alone": _pct(alone, 0.95),
            "yielding": _pct(yielding, 0.95),
            "fifo": _pct(fifo, 0.95),
        },
        "ratio_yielding": med["yielding"] / med["alone"],
        "ratio_fifo": med["fifo"] / med["alone"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--layers", type=int, default=4, help="layers of the tiny model")
    ap.add_argument("--window", type=int, default=800, help="tokens per batch generation")
    args = ap.parse_args(argv)
    r = run(args.questions, args.layers, args.window)
    ms = {k: v * 1000 for k, v in r["median_s"].items()}
    p95 = {k: v * 1000 for k, v in r["p95_s"].items()}
    print(
        f"tiny Qwen3 ({args.layers} layers, int8) on one generation worker (1 thread), its own"
        f" Redis; batch generations of {args.window} tokens ({r['window_s'] * 1000:.0f} ms"
        f" each alone); {r['questions']} questions per case, interleaved"
    )
    print(
        f"  TTFT alone                       median {ms['alone']:7.1f} ms"
        f"   p95 {p95['alone']:7.1f} ms"
    )
    print(
        f"  TTFT during batch work (summary) median {ms['yielding']:7.1f} ms"
        f"   p95 {p95['yielding']:7.1f} ms   ratio {r['ratio_yielding']:.2f}"
    )
    print(
        f"  TTFT during the same work, FIFO  median {ms['fifo']:7.1f} ms"
        f"   p95 {p95['fifo']:7.1f} ms   ratio {r['ratio_fifo']:.2f}"
    )


if __name__ == "__main__":
    main()
