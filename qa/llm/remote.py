"""Generation on worker processes, tokens streamed back over Redis (the scaled mode).

The web process keeps only the tokenizer (to plan prompts) and a ``RemoteGenerator``; the
model runs in worker processes consuming the ``generate`` queue. Celery only dispatches a
request; its events travel back on a Redis stream, because a Celery result is one value,
not a stream, and a stream (unlike pub/sub) keeps what the reader has not read yet::

    web: RemoteGenerator.stream                   generation worker: serve_request
    send_task("docqa.generate", [id, payload]) -> SET claim NX   one attempt per request
                                                  XADD started   queued -> running
    XREAD BLOCK events  <-----------------------  XADD token     one per text piece
                        <-----------------------  XADD hb        when idle for heartbeat_s
                        <-----------------------  XADD final | error
    client gone: SET cancel  ------------------>  read with every token and heartbeat

Keys, under ``docqa:gen:<request id>:``, all expiring on their own:

    events   stream of JSON events           TTL EVENTS_TTL_S, renewed by every write
    cancel   set once the web gave up        TTL EVENTS_TTL_S
    claim    the attempt that took it        TTL claim_ttl_s (the broker's visibility timeout)

Failures end the answer with a ``GenerationError`` (an ``error`` event), never a hang:

* no ``started`` within ``queue_timeout_s`` (no worker, or all busy with other web
  processes' questions); the task carries ``expires`` = that timeout, so Celery drops it
  instead of running it later for nobody;
* nothing (token or heartbeat) within ``stall_timeout_s`` once started: the worker died;
* a request delivered a second time (its worker process was killed and Celery requeued
  it) finds its claim taken and publishes an error at once instead of a second answer.

Questions before summaries, across processes and machines. Summary workers hold no model:
their generations are ``batch`` requests on the same ``generate`` queue, so a machine loads
the model once and one slot serves both kinds. Two things keep a question from waiting
behind a summary:

* message priority: questions are sent at priority 0, batch requests at 9; Redis keeps one
  list per priority step and a worker pops the questions' list first;
* preemption: a question registers in ``docqa:gen:waiting`` (a sorted set, score = when its
  wait expires) until a worker claims it. A worker running a batch request reads that set
  with every token it writes (same round trip) and every ``BATCH_POLL_S`` in between; when
  a question waits, the model stops at its next token or prefill chunk and the request
  ends with ``finish = "preempted"``. The caller (``qa.llm.resumable``) sends the rest as
  a new batch request, which the worker's KV cache continues where it stopped; the
  question meanwhile takes the worker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis

from qa.errors import (
    ConfigError,
    DocqaError,
    GenerationError,
    InvalidInput,
    ModelNotBuilt,
    Unavailable,
    from_wire,
)
from qa.llm.generate import ChatMessage, GenerationStats, Generator, Prompt, TokenEvent
from qa.llm.kv_cache import KVSessionCache
from qa.llm.manifest import FORMAT_VERSION, MANIFEST, build_key, model_label
from qa.llm.sampling import SamplingDefaults

log = logging.getLogger(__name__)

TASK = "docqa.generate"
QUEUE = "generate"
EVENTS_TTL_S = 600
KEY_PREFIX = "docqa:gen:"
#: questions sent and not yet claimed by a worker: request id -> unix time its entry
#: expires; the waiting web renews it every second, so a web that died stops counting soon
WAITING_KEY = KEY_PREFIX + "waiting"
WAITING_TTL_S = 10.0
#: how long a question may wait for a generation worker to start it
QUESTION_QUEUE_TIMEOUT_S = 300.0
#: how often a worker running a batch request looks for waiting questions between writes
BATCH_POLL_S = 0.02
#: Celery message priorities; on Redis the lower number is served first
INTERACTIVE_PRIORITY = 0
BATCH_PRIORITY = 9

#: (request id, payload) -> None; raises when the request could not be enqueued
Dispatch = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Keys:
    request_id: str
    events: str
    cancel: str
    claim: str

    @classmethod
    def of(cls, request_id: str) -> Keys:
        base = f"{KEY_PREFIX}{request_id}:"
        return cls(request_id, base + "events", base + "cancel", base + "claim")


def _is_messages(prompt: Prompt) -> bool:
    return len(prompt) > 0 and isinstance(prompt[0], Mapping)


def _jsonable(prompt: Prompt) -> list[Any]:
    if _is_messages(prompt):
        return [dict(m) for m in cast(Sequence[ChatMessage], prompt)]
    return [int(i) for i in cast(Sequence[int], prompt)]


def _error(event: dict[str, Any]) -> DocqaError:
    """The worker's error as its own class; one of unknown code is a generation error."""
    return from_wire(event, unknown=GenerationError)


# -- the web side ---------------------------------------------------------------------------


def read_model_info(model_dir: Path) -> tuple[int, int, str, str]:
    """(context length, vocabulary size, model key, label) from the manifest alone.

    The web needs no weights: the manifest and the tokenizer files of the model folder are
    enough, so a web host may carry the folder without ``model.onnx(.data)``.
    """
    path = model_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelNotBuilt(f"{path}: format {data.get('format_version')}; rebuild the model")
        return (
            int(data["context_length"]),
            int(data["vocab_size"]),
            build_key(data),
            model_label(data),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelNotBuilt(f"{path}: no readable model manifest ({exc})") from exc


def celery_dispatch(broker_url: str, *, expires_s: float, time_limit_s: int) -> Dispatch:
    """Send ``docqa.generate`` by name through a producer-only Celery app.

    ``qa`` may not import ``worker``; the task is addressed by name and queue, which is all
    a producer needs. ``expires`` makes a request nobody waits for any more a no-op.
    """
    from celery import Celery

    app = Celery("docqa-web", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])

    def send(request_id: str, payload: dict[str, Any]) -> None:
        app.send_task(
            TASK,
            args=[request_id, payload],
            queue=QUEUE,
            priority=BATCH_PRIORITY if payload.get("batch") else INTERACTIVE_PRIORITY,
            expires=expires_s,
            time_limit=time_limit_s,
            soft_time_limit=max(1, time_limit_s - 15),
        )

    return send


class RemoteGenerator(Generator):
    """A ``Generator`` whose model runs on a generation worker; tokens arrive over Redis.

    ``session_cache`` is ignored here: each worker keeps its own KV cache, so a chat's
    follow-up reuses its prefix when it lands on the same worker.

    ``batch=True`` (summaries): sent at batch priority, never counted as a waiting
    question, and preempted by one (the stream then ends with ``finish = "preempted"``).
    """

    def __init__(
        self,
        model_dir: Path,
        redis_url: str,
        *,
        dispatch: Dispatch | None = None,
        queue_timeout_s: float = QUESTION_QUEUE_TIMEOUT_S,
        stall_timeout_s: float = 20.0,
        time_limit_s: int = 1800,
        poll_s: float = 0.5,
        batch: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        info = read_model_info(self.model_dir)
        self.context_length, self.vocab_size, self.model_key, self.label = info
        self.sampling_defaults = SamplingDefaults.from_model_dir(self.model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotBuilt(f"{self.model_dir}: tokenizer does not load ({exc})") from exc
        self.queue_timeout_s = queue_timeout_s
        self.stall_timeout_s = stall_timeout_s
        #: the worker writes a heartbeat this often when it has nothing else to say
        self.heartbeat_s = max(0.2, min(stall_timeout_s / 5, 5.0))
        self.poll_s = poll_s
        self.batch = batch
        # The socket timeout must outlast one blocking XREAD.
        self.redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=5, socket_timeout=poll_s + 10
        )
        self._dispatch = dispatch or celery_dispatch(
            redis_url, expires_s=queue_timeout_s, time_limit_s=time_limit_s
        )

    def encode(self, prompt: Prompt) -> list[int]:
        if _is_messages(prompt):
            ids = self.tokenizer.apply_chat_template(
                [dict(m) for m in cast(Sequence[ChatMessage], prompt)],
                add_generation_prompt=True,
                tokenize=True,
            )
            return [int(i) for i in ids]
        ids = [int(i) for i in cast(Sequence[int], prompt)]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise InvalidInput(f"token ids must be in [0, {self.vocab_size})")
        return ids

    def stream(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        session_cache: KVSessionCache | None = None,
        chat_id: str | None = None,
    ) -> Iterator[TokenEvent]:
        # Input errors raise here, before anything is sent (as the local generator does).
        # Settings left out take the folder's generation_config.json values here: the worker
        # runs the same build (model_key), so it would choose the same.
        params = self.sampling_defaults.params(max_new_tokens, temperature, top_p, top_k, seed)
        params.validate()
        n = len(self.encode(prompt))
        if n == 0:
            raise InvalidInput("empty prompt")
        if n >= self.context_length:
            raise InvalidInput(
                f"prompt of {n} tokens leaves no room in the {self.context_length}-token context"
            )
        payload: dict[str, Any] = {
            "prompt": _jsonable(prompt),
            "max_new_tokens": max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "seed": seed,
            "chat_id": chat_id,
            "model": self.model_key,
            "heartbeat_s": self.heartbeat_s,
            "batch": self.batch,
        }
        return self._events(payload, cancel)

    def _events(
        self, payload: dict[str, Any], cancel: threading.Event | None
    ) -> Iterator[TokenEvent]:
        request_id = uuid.uuid4().hex
        keys = Keys.of(request_id)
        ended = False  # the worker sent its last event: nothing to cancel
        try:
            try:
                if not self.batch:  # batch work running on the workers makes way for it
                    self.redis.zadd(WAITING_KEY, {request_id: time.time() + WAITING_TTL_S})
                self._dispatch(request_id, payload)
            except DocqaError:
                raise
            except Exception as exc:  # kombu/redis connection errors, untyped by Celery
                raise Unavailable(
                    f"the generation queue is not reachable ({type(exc).__name__})"
                ) from exc
            sent = time.monotonic()
            first: float | None = None
            for event in self._read(keys, cancel):
                kind = event["t"]
                if kind == "error":
                    ended = True
                    raise _error(event)
                if first is None:
                    first = time.monotonic()
                ids = tuple(int(i) for i in event.get("ids", ()))
                if kind == "token":
                    yield TokenEvent(str(event["text"]), ids)
                    continue
                ended = True  # "final"
                yield TokenEvent(
                    str(event["text"]),
                    ids,
                    event["finish"],
                    _web_stats(event.get("stats"), sent, first),
                )
                return
            # _read returns only when the local cancel was set
            yield TokenEvent("", (), "cancelled", None)
        finally:
            self._cleanup(keys, cancel_worker=not ended)

    def _read(self, keys: Keys, cancel: threading.Event | None) -> Iterator[dict[str, Any]]:
        """Token, final and error events as they arrive; raises when the worker goes quiet."""
        last_id = "0-0"
        worker: str | None = None  # set by "started"
        heard = renewed = time.monotonic()
        while cancel is None or not cancel.is_set():
            if worker is None and not self.batch and time.monotonic() - renewed >= 1.0:
                renewed = time.monotonic()
                try:  # XX: once a worker has taken it, it stays out of the set
                    expires = time.time() + WAITING_TTL_S
                    self.redis.zadd(WAITING_KEY, {keys.request_id: expires}, xx=True)
                except redis.RedisError as exc:
                    raise GenerationError(f"lost the connection to Redis ({exc})") from exc
            limit = self.stall_timeout_s if worker else self.queue_timeout_s
            left = heard + limit - time.monotonic()
            if left <= 0:
                if worker:
                    raise GenerationError(
                        f"the generation worker {worker} stopped (no sign of life for "
                        f"{limit:.0f} s); the answer is incomplete"
                    )
                raise GenerationError(
                    f"no generation worker started the answer within {limit:.0f} s; is a "
                    "worker consuming the 'generate' queue running?"
                )
            try:
                reply = self.redis.xread(
                    {keys.events: last_id}, block=max(1, int(min(left, self.poll_s) * 1000))
                )
            except redis.RedisError as exc:
                raise GenerationError(f"lost the connection to Redis ({exc})") from exc
            entries = reply.items() if isinstance(reply, dict) else reply  # RESP3 | RESP2
            for _key, batch in entries:
                for entry_id, fields in _entries(batch):
                    last_id = entry_id
                    heard = time.monotonic()
                    event: dict[str, Any] = json.loads(fields["e"])
                    if event["t"] == "started":
                        worker = str(event.get("worker") or "?")
                    elif event["t"] != "hb":
                        yield event

    def _cleanup(self, keys: Keys, *, cancel_worker: bool) -> None:
        try:
            # One MULTI: whatever the worker writes after the cancel lands in a new stream
            # (which expires), never in the middle of this cleanup.
            pipe = self.redis.pipeline(transaction=True)
            if cancel_worker:
                pipe.set(keys.cancel, "1", ex=EVENTS_TTL_S)
            pipe.delete(keys.events)
            if not self.batch:  # no longer waiting, whether a worker took it or not
                pipe.zrem(WAITING_KEY, keys.request_id)
            pipe.execute()
        except redis.RedisError as exc:  # cannot raise from a closing stream; TTLs clean up
            log.warning("could not clean up generation request %s: %s", keys.events, exc)


def _entries(batch: Any) -> list[tuple[str, dict[str, str]]]:
    return [(str(i), dict(f)) for i, f in batch]


def _web_stats(raw: Any, sent: float, first: float | None) -> GenerationStats | None:
    """The worker's stats, with time to first token as the web saw it (queue included)."""
    if not isinstance(raw, dict):
        return None
    stats = GenerationStats(**raw)
    now = time.monotonic()
    return dataclasses.replace(
        stats,
        time_to_first_token_s=(first or now) - sent,
        total_s=now - sent,
    )


# -- the worker side ------------------------------------------------------------------------


class _Publisher:
    """Writes one request's events; a thread keeps a heartbeat and watches the cancel key.

    Every write is one round trip: XADD + EXPIRE + EXISTS(cancel) in a pipeline (for a
    batch request also ZCOUNT of the waiting questions), so the worker notices a cancel or
    a question at the next token without an extra request. While the model is busy
    elsewhere (loading, prefilling a long prompt) the thread writes ``hb`` events and polls
    the same keys, so the web can tell a slow worker from a dead one and a long prefill
    gives way to a question between its chunks.
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, heartbeat_s: float, *, batch: bool = False
    ) -> None:
        self.client = client
        self.keys = keys
        self.heartbeat_s = heartbeat_s
        self.batch = batch
        #: stops the model: set when the web gave up (``abandoned``) or, for a batch
        #: request, when a question waits (``preempted``)
        self.cancel = threading.Event()
        self.abandoned = False
        self.preempted = False
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="docqa-gen-heartbeat", daemon=True)

    def __enter__(self) -> _Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def send(self, event: dict[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.keys.events, {"e": json.dumps(event, ensure_ascii=False)})
        pipe.expire(self.keys.events, EVENTS_TTL_S)
        self._watch(pipe)
        replies = pipe.execute()
        self._last = time.monotonic()
        self._note(replies[2:])

    def _watch(self, pipe: Any) -> None:
        pipe.exists(self.keys.cancel)
        if self.batch:
            pipe.zcount(WAITING_KEY, time.time(), "+inf")

    def _note(self, replies: Sequence[Any]) -> None:
        if replies[0]:
            self.abandoned = True
            self.cancel.set()
        elif self.batch and replies[1]:
            self.preempted = True
            self.cancel.set()

    def _beat(self) -> None:
        # A batch request must notice a question quickly even between writes: not every
        # token completes a piece of text (nothing is written then), and a prefill chunk
        # writes nothing at all.
        tick = BATCH_POLL_S if self.batch else min(self.heartbeat_s, 0.5)
        try:
            while not self._stop.wait(tick):
                idle = time.monotonic() - self._last
                if idle >= self.heartbeat_s:
                    self.send({"t": "hb"})
                elif idle >= tick:  # tokens are slow (a long prefill): poll in between
                    pipe = self.client.pipeline(transaction=False)
                    self._watch(pipe)
                    self._note(pipe.execute())
        except redis.RedisError as exc:  # the web will time out; the answer cannot be read
            log.warning("generation heartbeat stopped: %s", exc)
            self.abandoned = True
            self.cancel.set()


def serve_request(
    client: redis.Redis,
    request_id: str,
    payload: Mapping[str, Any],
    *,
    generator: Callable[[], Generator | None],
    cache: KVSessionCache | None,
    worker: str,
    claim_ttl_s: int,
) -> str:
    """Run one generation request, publishing its events; return how it ended.

    ``generator`` is called after the request is claimed and the heartbeat runs, so a
    first request that loads the model does not look like a dead worker.
    """
    keys = Keys.of(request_id)
    attempt = f"{worker}/{os.getpid()}"
    heartbeat_s = min(max(float(payload.get("heartbeat_s", 4.0)), 0.2), 30.0)
    batch = bool(payload.get("batch"))
    try:
        # Taken: no longer a waiting question (also when it turns out abandoned).
        pipe = client.pipeline(transaction=False)
        pipe.zrem(WAITING_KEY, request_id)
        pipe.zremrangebyscore(WAITING_KEY, "-inf", time.time())  # entries of dead webs
        pipe.exists(keys.cancel)
        if pipe.execute()[-1]:
            return "abandoned"  # the web gave up while it was queued
        if not client.set(keys.claim, attempt, nx=True, ex=claim_ttl_s):
            # Delivered again after its worker process died mid-answer: the web is still
            # reading the first attempt's stream; say so instead of answering twice.
            publisher = _Publisher(client, keys, heartbeat_s)
            _send_error(
                publisher,
                GenerationError("the generation worker stopped while answering; ask again"),
            )
            return "redelivered"
    except redis.RedisError as exc:
        log.warning("generation request %s: Redis unreachable: %s", request_id, exc)
        return "redis-unreachable"
    with _Publisher(client, keys, heartbeat_s, batch=batch) as publisher:
        try:
            publisher.send({"t": "started", "worker": attempt})
            return _generate(publisher, payload, generator, cache)
        except redis.RedisError as exc:  # nobody can be told; the web times out
            log.warning("generation request %s: lost Redis: %s", request_id, exc)
            return "redis-failed"
        except DocqaError as exc:
            _send_error(publisher, exc)
            return "error"
        except Exception as exc:  # also Celery's soft time limit
            log.exception("generation request %s failed", request_id)
            _send_error(publisher, GenerationError(f"the generation worker failed ({exc})"))
            return "error"


def _send_error(publisher: _Publisher, error: DocqaError) -> None:
    try:
        publisher.send({"t": "error", **error.to_wire()})
    except redis.RedisError as exc:
        log.warning("could not report a generation error: %s", exc)


def _generate(
    publisher: _Publisher,
    payload: Mapping[str, Any],
    load: Callable[[], Generator | None],
    cache: KVSessionCache | None,
) -> str:
    generator = load()
    if generator is None:
        raise ModelNotBuilt("no model is built on the generation worker")
    key = getattr(generator, "model_key", None)
    if key is not None and payload.get("model") not in (None, key):
        raise ConfigError(
            f"the generation worker runs model build {key}, the web process planned the "
            f"prompt for {payload.get('model')}; give both the same model folder"
        )
    prompt: Sequence[Any] = payload["prompt"]
    events = generator.stream(
        prompt,
        max_new_tokens=int(payload["max_new_tokens"]),
        temperature=float(payload["temperature"]),
        top_p=float(payload["top_p"]),
        top_k=int(payload["top_k"]),
        seed=payload.get("seed"),
        cancel=publisher.cancel,
        session_cache=cache,
        chat_id=payload.get("chat_id"),
    )
    try:
        for event in events:
            ids = list(event.token_ids)
            if event.finish_reason is None:
                publisher.send({"t": "token", "text": event.text, "ids": ids})
                continue
            finish: str = event.finish_reason
            if finish == "cancelled" and publisher.abandoned:
                return "cancelled"  # the web stopped reading and deleted the stream
            if finish == "cancelled" and publisher.preempted:
                finish = "preempted"  # the caller sends the rest again
            stats = dataclasses.asdict(event.stats) if event.stats is not None else None
            publisher.send(
                {"t": "final", "text": event.text, "ids": ids, "finish": finish, "stats": stats}
            )
            return finish
        return "stop"
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # gives the model's lock back at once, also on a Redis failure
