"""Generation on a real Celery worker, tokens streamed back over the real Redis.

The worker is a subprocess (``docqa worker --queues generate --concurrency 1``) serving the
tiny streaming Qwen3 built through the production path; the web side is a
``RemoteGenerator`` over a copy of the model folder WITHOUT ``model.onnx(.data)``, which
shows the web process needs only the tokenizer and the manifest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from qa.answering.answer_service import AnswerService, AskOptions
from qa.errors import GenerationError, Unavailable
from qa.llm.generate import OnnxQwenGenerator
from qa.llm.remote import KEY_PREFIX, WAITING_KEY, RemoteGenerator
from qa.llm.slot import ModelSlot
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from tests.conftest import REPO, SAMPLES
from tests.qa.answer_corpus import answer_service_over
from tests.web.live import artifacts_dir, build_streaming_model, free_port

# Latency bounds (time to first token, cancel, preemption): run alone on the CPU, after the
# parallel part of make test.
pytestmark = pytest.mark.serial

REDIS_URL = os.environ.get("DOCQA_TEST_REDIS_URL_GENERATE", "redis://127.0.0.1:6379/14")
MESSAGES = [
    {"role": "system", "content": "You answer from the sources."},
    {"role": "user", "content": "What is the hotel limit in London?"},
]
#: stall timeout of the web side in these tests (production default: 20 s)
STALL_S = 3.0

# A bootstrap for as long as ``docqa worker`` does not exist: configure, then run Celery.
_BOOTSTRAP = """
import sys
from qa.settings import Settings
from worker import celery_app
settings = Settings(data_dir=sys.argv[1])
celery_app.app.conf.update(celery_app.celery_config(settings))
celery_app.app.conf.docqa_settings = settings
import worker.tasks_generate
celery_app.app.worker_main(
    ["worker", "-Q", "generate", "-c", "1", "-l", "INFO", "-n", "gen@%h", "--without-mingle",
     "--without-gossip"]
)
"""


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the worker's built model, the web's copy with no weights)."""
    root = tmp_path_factory.mktemp("remote-gen")
    full = build_streaming_model(root)
    web = root / "web-model"
    web.mkdir()
    for f in full.iterdir():
        if not f.name.startswith("model.onnx"):
            shutil.copy2(f, web / f.name)
    return full, web


def docqa_worker_ready() -> bool:
    """``docqa worker`` exists and every task module it loads is there (built in parallel)."""
    from worker.celery_app import TASK_MODULES

    modules = ["cli.worker", *TASK_MODULES]
    return all(importlib.util.find_spec(m) is not None for m in modules)


class Worker:
    """A generation worker subprocess in its own process group."""

    def __init__(self, model_dir: Path, root: Path, name: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.data_dir = root / "var"
        self.log_path = artifacts_dir() / "server-logs" / f"generation-worker-{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "DOCQA_BROKER_URL": REDIS_URL,
                "DOCQA_MODEL_DIR": str(model_dir),
                "DOCQA_LLM_THREADS": "1",
                # Prompt lookup off: a preempted request resumes with other step widths
                # than an uninterrupted one, and a step of several tokens rounds (1e-6)
                # apart from single steps, which flipped a near-tie of the tiny model's
                # repetitive 1,500 tokens at token 851 on an AVX2-only CPU. What is tested
                # here is preemption and resumption, exact without speculation.
                "DOCQA_LLM_DRAFT_TOKENS": "0",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO),
            }
        )
        if docqa_worker_ready():
            cmd = [sys.executable, "-m", "cli.main", "--data-dir", str(self.data_dir)]
            cmd += ["worker", "--queues", "generate", "--concurrency", "1"]
        else:
            cmd = [sys.executable, "-c", _BOOTSTRAP, str(self.data_dir)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown stops the pool too
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def remote(web_model: Path, **kw: Any) -> RemoteGenerator:
    kw.setdefault("stall_timeout_s", STALL_S)
    kw.setdefault("queue_timeout_s", 60.0)
    return RemoteGenerator(web_model, REDIS_URL, **kw)


def warm_up(web_model: Path, worker: Worker, timeout: float = 90.0) -> None:
    """The first answer: proves the worker consumes ``generate`` (and loads its model)."""
    gen = remote(web_model, queue_timeout_s=2.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            text, last = gen.generate(MESSAGES, max_new_tokens=4, temperature=0.0)
            assert last.finish_reason == "length" and text
            return
        except GenerationError as exc:
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no answer: {exc}\n{worker.log()[-3000:]}") from exc


@pytest.fixture(scope="module")
def worker(
    models: tuple[Path, Path],
    redis_client: redis.Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    w = Worker(models[0], tmp_path_factory.mktemp("gen-worker"), "shared")
    try:
        warm_up(models[1], w)
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def gen(models: tuple[Path, Path], worker: Worker) -> RemoteGenerator:
    return remote(models[1])


#: asked of the handbook: its vacation passage passes the answer service's evidence gate, so
#: the model runs (a question nothing supports is declined before the model starts)
HANDBOOK_QUESTION = "How many days of paid annual leave does a full-time employee get?"


def answer_service(
    tmp_path: Path, embedder: Embedder, generator: RemoteGenerator, capacity: int = 1
) -> tuple[AnswerService, list[int]]:
    """An answer service over the ingested handbook, and the handbook's collection id."""
    settings = Settings(data_dir=tmp_path / "var", model_dir=tmp_path / "no-model")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    corpus = {"handbook": [SAMPLES / "employee-handbook.md"]}
    service, ids = answer_service_over(settings, embedder, corpus, generator)
    service.slot = ModelSlot(capacity=capacity, heartbeat_s=0.2)
    return service, [ids["handbook"]]


def stream_keys(client: redis.Redis, kind: str) -> set[str]:
    return set(client.scan_iter(f"{KEY_PREFIX}*:{kind}"))


# -- the slot -------------------------------------------------------------------------------


def test_slot_capacity_lets_one_question_run_per_generation_worker() -> None:
    slot = ModelSlot(capacity=2)
    a, b = slot.join(), slot.join()
    assert a.holding and b.holding
    c = slot.join()
    waiting = c.wait()
    assert next(waiting) == 1  # the third waits for one of the two
    a.release()
    assert list(waiting) == [] and c.holding
    b.release()
    c.release()
    assert not slot.in_use


# -- web side -------------------------------------------------------------------------------


def test_the_web_process_answers_through_the_worker_without_onnxruntime(
    tmp_path: Path,
    models: tuple[Path, Path],
    worker: Worker,
    embedder: Embedder,
) -> None:
    """``docqa serve``'s wiring in scaled mode: a RemoteGenerator, sources, streamed tokens."""
    from ingest.factory import build_ingest_service
    from ingest.runner import run_ingest

    data = tmp_path / "var"
    ingest = build_ingest_service(Settings(data_dir=data), embedder=embedder)
    try:
        run_ingest(ingest, [SAMPLES / "employee-handbook.md"], "handbook")
    finally:
        ingest.close()
    script = """
import json, sys, time
from qa.answering.answer_service import AskOptions
from qa.store.catalog import get_collection
from qa.answering.assembly import build_answer_service
from qa.settings import Settings

service = build_answer_service(Settings())
with service.db.session() as s:
    cid = get_collection(s, "handbook").id
started = time.perf_counter()
events = []
options = AskOptions(temperature=0.0, max_tokens=60)
for event in service.ask("How many vacation days?", [cid], options):
    wire = event.to_json()
    wire["at_ms"] = round((time.perf_counter() - started) * 1000, 1)
    events.append(wire)
print(json.dumps({
    "generator": type(service.generator).__name__,
    "capacity": service.slot.capacity,
    "onnxruntime": sorted(m for m in sys.modules if m.startswith("onnxruntime")),
    "events": events,
}))
"""
    env = dict(os.environ)
    env.update(
        {
            "DOCQA_DATA_DIR": str(data),
            "DOCQA_MODEL_DIR": str(models[1]),  # no weights there
            "DOCQA_BROKER_URL": REDIS_URL,
            "DOCQA_GENERATION": "worker",
            "DOCQA_GENERATION_WORKERS": "2",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["generator"] == "RemoteGenerator" and out["capacity"] == 2
    assert out["onnxruntime"] == []
    events = out["events"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources" and events[0]["sources"]
    assert kinds[-2:] == ["citations", "done"], events[-3:]
    tokens = [e for e in events if e["type"] == "token"]
    assert len(tokens) > 10  # streamed piece by piece, not as one late block
    assert tokens[-1]["at_ms"] - tokens[0]["at_ms"] > 0
    done = events[-1]
    assert done["mode"] == "generative" and done["finish_reason"] == "length"
    assert done["completion_tokens"] == 60 and done["prompt_tokens"] > 50
    assert done["model"].endswith("(INT8)")  # named from the manifest, no weights loaded


def test_tokens_stream_from_the_worker_as_fast_as_in_process(
    gen: RemoteGenerator, models: tuple[Path, Path]
) -> None:
    """First token and per-token cost through Celery + Redis vs the model in-process."""
    n = 600
    local = OnnxQwenGenerator(models[0], threads=1)

    def measure(g: RemoteGenerator | OnnxQwenGenerator) -> dict[str, float]:
        best: dict[str, float] = {}
        for _ in range(3):
            started = time.perf_counter()
            events = g.stream(MESSAGES, max_new_tokens=n, temperature=0.0)
            event = next(events)
            first = time.perf_counter()
            for event in events:  # noqa: B007 - the last one carries the stats
                pass
            total = time.perf_counter() - started
            assert event.stats is not None and event.stats.generated_tokens == n
            run = {"ttft_ms": (first - started) * 1000, "per_token_ms": total * 1000 / n}
            best = {k: min(v, best.get(k, v)) for k, v in run.items()}
        return best

    in_process, worker = measure(local), measure(gen)
    report = {
        "in_process": in_process,
        "worker": worker,
        "overhead_per_token_ms": worker["per_token_ms"] - in_process["per_token_ms"],
    }
    (artifacts_dir() / "remote-generation-latency.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert worker["ttft_ms"] < in_process["ttft_ms"] + 250
    # The tiny model takes ~1 ms a token, the real one 100+ ms: a few ms of transport per
    # token (one pipelined round trip to Redis) is what the design allows, on a busy CI box.
    assert worker["per_token_ms"] < 2 * in_process["per_token_ms"] + 3.0


def test_closing_the_stream_stops_the_worker_within_a_token(
    gen: RemoteGenerator, redis_client: redis.Redis, worker: Worker
) -> None:
    before = stream_keys(redis_client, "cancel")
    events = gen.stream(MESSAGES, max_new_tokens=3500, temperature=0.0)  # ~3 s of tokens
    got = [next(events) for _ in range(5)]
    assert all(e.finish_reason is None for e in got)
    events.close()  # what web/sse.py does when the client goes away
    closed = time.perf_counter()
    (cancel_key,) = stream_keys(redis_client, "cancel") - before
    # With one worker process, the next request starts only once the cancelled one ended.
    _, last = gen.generate(MESSAGES, max_new_tokens=2, temperature=0.0)
    freed_s = time.perf_counter() - closed
    assert last.finish_reason == "length"
    assert freed_s < 1.0, f"the worker went on for {freed_s:.2f} s after the cancel"
    # The web deleted the stream when it closed; whatever the worker wrote afterwards is
    # the text it produced after the cancel: at most the token already being written.
    late = redis_client.xlen(cancel_key.replace(":cancel", ":events"))
    assert late <= 2
    deadline = time.monotonic() + 5
    while "'cancelled'" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = re.findall(r"succeeded in ([0-9.]+)s: 'cancelled'", worker.log())
    assert ended and float(ended[-1]) < 2.0  # the full answer takes ~3 s
    print(f"cancel: {late} late event(s); worker free {freed_s * 1000:.0f} ms after close")


def test_two_questions_with_one_worker_are_served_in_order(
    tmp_path: Path, gen: RemoteGenerator, embedder: Embedder
) -> None:
    service, handbook = answer_service(tmp_path, embedder, gen, capacity=1)
    log: dict[str, list[tuple[float, dict[str, Any]]]] = {"a": [], "b": []}

    def ask(name: str) -> None:
        options = AskOptions(temperature=0.0, max_tokens=800)
        for event in service.ask(HANDBOOK_QUESTION, handbook, options):
            log[name].append((time.perf_counter(), event.to_json()))

    a = threading.Thread(target=ask, args=("a",))
    a.start()
    deadline = time.monotonic() + 30
    while not any(e["type"] == "token" for _, e in log["a"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    b = threading.Thread(target=ask, args=("b",))
    b.start()
    a.join(60)
    b.join(60)
    for name in "ab":
        assert log[name][-1][1]["type"] == "done", log[name][-3:]
        assert log[name][-1][1]["finish_reason"] == "length"
    a_done = log["a"][-1][0]
    b_first_token = next(t for t, e in log["b"] if e["type"] == "token")
    assert b_first_token > a_done
    assert [e["position"] for _, e in log["b"] if e["type"] == "queued"][:1] == [1]


def test_requests_of_several_web_processes_queue_in_the_broker_in_order(
    models: tuple[Path, Path], worker: Worker
) -> None:
    """Two web processes (no shared slot), one worker: FIFO in the ``generate`` queue."""
    first, second = remote(models[1]), remote(models[1])
    times: dict[str, list[float]] = {"a": [], "b": []}

    def run(name: str, g: RemoteGenerator) -> None:
        for _ in g.stream(MESSAGES, max_new_tokens=800, temperature=0.0):
            times[name].append(time.perf_counter())

    a = threading.Thread(target=run, args=("a", first))
    a.start()
    time.sleep(0.05)
    b = threading.Thread(target=run, args=("b", second))
    b.start()
    a.join(60)
    b.join(60)
    assert times["a"] and times["b"]
    assert times["b"][0] > times["a"][-1]


def test_no_generation_worker_is_a_clear_error_not_a_hang(models: tuple[Path, Path]) -> None:
    nobody = remote(models[1], dispatch=lambda rid, payload: None, queue_timeout_s=1.0)
    started = time.perf_counter()
    with pytest.raises(GenerationError, match="no generation worker started"):
        list(nobody.stream(MESSAGES, max_new_tokens=5))
    assert time.perf_counter() - started < 3


def test_an_unreachable_broker_is_unavailable(models: tuple[Path, Path]) -> None:
    down = RemoteGenerator(models[1], f"redis://127.0.0.1:{free_port()}/0")
    started = time.perf_counter()
    with pytest.raises(Unavailable):
        next(down.stream(MESSAGES, max_new_tokens=5))
    assert time.perf_counter() - started < 15


# -- questions before batch work ------------------------------------------------------------


def batch(web_model: Path, **kw: Any) -> RemoteGenerator:
    """A summary's generator: batch priority, preempted by any question."""
    return remote(web_model, batch=True, **kw)


def test_a_question_preempts_a_batch_request_which_then_continues_token_identically(
    models: tuple[Path, Path], redis_client: redis.Redis, worker: Worker
) -> None:
    """One worker: a question sent during a long batch generation starts within a few
    tokens; the batch request ends "preempted" and its continuation (prompt + tokens so
    far, on the worker's KV cache) produces exactly the tokens of an uninterrupted run."""
    n = 1500
    summary = batch(models[1])
    chat = "summary-test-preempt"
    reference = [
        i
        for e in summary.stream(MESSAGES, max_new_tokens=n, temperature=0.0, chat_id=chat + "-ref")
        for i in e.token_ids
    ]
    assert len(reference) == n

    produced: list[int] = []
    events = summary.stream(MESSAGES, max_new_tokens=n, temperature=0.0, chat_id=chat)
    for event in events:
        produced.extend(event.token_ids)
        if len(produced) >= 50:
            break
    asked = time.perf_counter()
    question = remote(models[1]).stream(MESSAGES, max_new_tokens=5, temperature=0.0)
    first_token_s: list[float] = []

    def read_question() -> None:
        for i, _ in enumerate(question):
            if i == 0:
                first_token_s.append(time.perf_counter() - asked)

    reader = threading.Thread(target=read_question)
    reader.start()
    last = None
    for event in events:  # the rest of the batch stream, up to its preemption
        produced.extend(event.token_ids)
        last = event
    preempted_s = time.perf_counter() - asked
    reader.join(30)
    assert last is not None and last.finish_reason == "preempted", last
    assert 50 <= len(produced) < n
    assert first_token_s, "the question got no token"
    # The whole batch run takes ~1.5 s on the tiny model; the question did not wait for it.
    assert first_token_s[0] < 1.0, first_token_s
    assert redis_client.zcard(WAITING_KEY) == 0  # the question left the waiting set

    # The continuation: the summarizer sends prompt + tokens so far as a new batch request.
    prompt = summary.encode(MESSAGES) + produced
    rest = list(
        summary.stream(prompt, max_new_tokens=n - len(produced), temperature=0.0, chat_id=chat)
    )
    final = rest[-1]
    assert final.finish_reason == "length" and final.stats is not None
    assert final.stats.cached_tokens == len(prompt) - 1  # nothing prefilled twice
    produced.extend(i for e in rest for i in e.token_ids)
    assert produced == reference
    print(
        f"preemption: question's first token {first_token_s[0] * 1000:.0f} ms after it was"
        f" sent; batch stream ended {preempted_s * 1000:.0f} ms after"
    )


def test_a_batch_request_with_no_question_waiting_is_not_preempted(
    models: tuple[Path, Path], redis_client: redis.Redis, worker: Worker
) -> None:
    # A question whose web process died leaves an entry that expired: it does not count.
    redis_client.zadd(WAITING_KEY, {"dead-web-request": time.time() - 1})
    text, last = batch(models[1]).generate(MESSAGES, max_new_tokens=300, temperature=0.0)
    assert last.finish_reason == "length" and text


# -- worker death ---------------------------------------------------------------------------


@dataclass
class Asked:
    events: list[dict[str, Any]]
    error_after_s: float | None


def ask_and_kill(
    service: AnswerService,
    collections: list[int],
    redis_client: redis.Redis,
    kill: Any,
    tokens_before_kill: int = 20,
) -> Asked:
    before = stream_keys(redis_client, "claim")
    events: list[dict[str, Any]] = []
    killed_at: float | None = None
    options = AskOptions(temperature=0.0, max_tokens=3500)
    for event in service.ask(HANDBOOK_QUESTION, collections, options):
        events.append(event.to_json())
        if killed_at is None and sum(e["type"] == "token" for e in events) == tokens_before_kill:
            (claim,) = stream_keys(redis_client, "claim") - before
            pid = int(redis_client.get(claim).rsplit("/", 1)[1])  # type: ignore[union-attr]
            kill(pid)
            killed_at = time.perf_counter()
    assert killed_at is not None
    return Asked(events, time.perf_counter() - killed_at)


def test_kill_9_of_the_generation_worker_mid_answer_ends_in_an_error_event(
    tmp_path: Path,
    models: tuple[Path, Path],
    redis_client: redis.Redis,
    worker: Worker,
    embedder: Embedder,
) -> None:
    worker.stop()  # the shared worker would take the requests otherwise
    own = Worker(models[0], tmp_path / "killed", "killed")
    try:
        service, handbook = answer_service(tmp_path, embedder, remote(models[1]))
        warm_up(models[1], own)

        # 1. The pool process running the answer dies: Celery requeues the request, the
        # second attempt finds the request claimed and reports the failure at once.
        child = ask_and_kill(
            service, handbook, redis_client, lambda pid: os.kill(pid, signal.SIGKILL)
        )
        assert child.events[-1]["type"] == "error", child.events[-3:]
        assert child.events[-1]["code"] == "generation"
        assert "stopped" in child.events[-1]["message"]
        assert child.error_after_s is not None and child.error_after_s < STALL_S + 2

        # 2. The whole worker dies (main process too): nothing is left to say so; the web
        # notices the silence after the stall timeout.
        whole = ask_and_kill(service, handbook, redis_client, lambda pid: own.kill())
        assert whole.events[-1]["type"] == "error", whole.events[-3:]
        assert "stopped" in whole.events[-1]["message"]
        assert whole.error_after_s is not None
        assert STALL_S - 0.5 < whole.error_after_s < STALL_S + 2
        assert not service.slot.in_use  # the slot was given back
        print(
            f"kill -9: pool process -> error in {child.error_after_s:.2f} s;"
            f" whole worker -> error in {whole.error_after_s:.2f} s"
        )
    finally:
        own.stop()
