"""``docqa.generate``: run the model for one web request, streaming tokens back over Redis.

The protocol (keys, events, timeouts) lives in ``qa.llm.remote``; this module holds
the per-process state a generation worker keeps between requests:

* the model (``OnnxQwenGenerator``), loaded once per process, in the background as soon as
  a pool process starts on a worker that consumes ``generate`` (else on first use);
* a ``KVSessionCache``: the system-prompt prefix (prefilled as the model loads), and each
  chat's last turn, so a follow-up question that lands on the same process prefills only
  its new tokens.

Redelivery: the app default (``acks_late`` + ``reject_on_worker_lost``) stays. A request
whose pool process was killed mid-answer is requeued at once; the second attempt finds the
request's claim taken and publishes "the generation worker stopped" instead of a second
answer nobody reads (the web is waiting on the first attempt's stream). A request restored
only after the visibility timeout (the whole worker was killed) has expired by then
(``expires`` = the web's queue timeout) and Celery discards it without running it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import Task, signals

from qa.answering.assembly import load_generator, warm_system_prefix
from qa.llm.generate import Generator
from qa.llm.kv_cache import KVSessionCache
from qa.llm.remote import QUEUE, TASK, serve_request
from qa.settings import Settings
from worker.celery_app import app, app_settings
from worker.per_process import PerProcess

log = logging.getLogger(__name__)


class _ProcessState:
    """What one worker process keeps across requests (rebuilt after a fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded = False
        self.generator: Generator | None = None
        self.cache = KVSessionCache()
        self.client: redis.Redis | None = None

    def load(self, settings: Settings) -> Generator | None:
        with self.lock:  # a preload still running is waited for, not repeated
            if not self.loaded:
                self.generator = load_generator(settings)
                self.loaded = True
                warm_system_prefix(self.generator, self.cache, settings)
            return self.generator

    def redis(self, settings: Settings) -> redis.Redis:
        if self.client is None:
            assert settings.broker_url is not None  # configure() refuses to run without it
            self.client = redis.Redis.from_url(
                settings.broker_url, socket_connect_timeout=5, socket_timeout=30
            )
        return self.client


# A forked child builds its own: sockets and sessions are not shared.
_state: PerProcess[_ProcessState] = PerProcess(_ProcessState)


def _process_state() -> _ProcessState:
    return _state.get()


def local_generator(settings: Settings) -> Generator | None:
    """This process's model, shared by every task that needs it (one copy per process)."""
    return _process_state().load(settings)


def local_kv_cache() -> KVSessionCache:
    """This process's KV cache (prefixes and chat turns of the model above)."""
    return _process_state().cache


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _preload(**_: Any) -> None:
    """Load the model while the process waits for its first request, not during it."""
    if QUEUE not in (app.amqp.queues.consume_from or {}):
        return
    try:
        settings = app_settings()
    except Exception:  # not configured through docqa: load lazily on first use
        return
    state = _process_state()

    def load() -> None:
        try:
            state.load(settings)
        except Exception:  # reported to the web by the first request that needs it
            log.exception("preloading the model failed")

    threading.Thread(target=load, name="docqa-model-preload", daemon=True).start()


@app.task(name=TASK, bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def generate(self: Task, request_id: str, payload: dict[str, Any]) -> str:
    settings = app_settings()
    state = _process_state()
    return serve_request(
        state.redis(settings),
        request_id,
        payload,
        generator=lambda: local_generator(settings),
        cache=state.cache,
        worker=str(self.request.hostname or "worker"),
        claim_ttl_s=settings.broker_visibility_timeout_s,
    )
