"""Prometheus metrics of one web process (``GET /metrics``).

Each app gets its own registry, so tests that build several apps in one process do not
collide on metric names. Counts that live in the DB (documents by status) and in the model
slot (queue depth) are read at scrape time, never duplicated in memory.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from qa.answering.answer_service import AnswerService
from qa.answering.events import AnswerEvent, Done, ErrorEvent
from qa.library.ingest_queue import IngestQueue
from qa.retrieval.index_store import IndexStore
from qa.retrieval.publish import unpublished_chunks
from qa.store.db.engine import Database
from qa.store.db.models import Document

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _DocumentCounts(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "docqa_documents", "Documents in the metadata DB by status", labels=["status"]
        )
        try:
            with self.db.session() as session:
                rows = session.execute(
                    select(Document.status, func.count()).group_by(Document.status)
                ).all()
        except Exception:  # a scrape must not fail because the DB hiccups
            log.warning("metrics: could not count documents", exc_info=True)
            rows = []
        for status, n in rows:
            family.add_metric([status], n)
        yield family


def _unpublished_total(db: Database, store: IndexStore) -> float:
    try:
        return float(sum(unpublished_chunks(db, store).values()))
    except Exception:  # a scrape must not fail because the DB hiccups
        log.warning("metrics: could not count unpublished chunks", exc_info=True)
        return -1.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "docqa_http_requests",
            "HTTP requests by endpoint and status",
            ["method", "endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "docqa_http_request_seconds",
            "Time to the response headers (streams are timed by time to first token)",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.questions = Counter(
            "docqa_questions",
            "Questions answered, by mode and finish",
            ["mode", "finish"],
            registry=r,
        )
        self.ttft = Histogram(
            "docqa_time_to_first_token_seconds",
            "From the question to the first answer token",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_per_s = Histogram(
            "docqa_decode_tokens_per_second",
            "Decode speed of each generated answer",
            buckets=(0.5, 1, 2, 4, 6, 8, 10, 15, 20, 40, 80, 160),
            registry=r,
        )
        self.completion_tokens = Counter(
            "docqa_completion_tokens", "Answer tokens generated", registry=r
        )
        self.draft_tokens = Counter(
            "docqa_draft_tokens",
            "Tokens drafted by prompt lookup and checked by the model, by verdict "
            "(acceptance rate: accepted / (accepted + rejected))",
            ["verdict"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "docqa_queue_wait_seconds",
            "Time a question waited for the model slot",
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.uploads = Counter(
            "docqa_uploaded_files",
            "Files accepted for ingestion, by status",
            ["status"],
            registry=r,
        )
        self._queue_depth = Gauge(
            "docqa_model_queue_depth", "Questions waiting for the model slot", registry=r
        )
        self._model_busy = Gauge("docqa_model_busy", "1 while the model is generating", registry=r)
        self._ingest_depth = Gauge(
            "docqa_ingest_queue_depth", "Documents waiting for or in ingestion", registry=r
        )
        self._stuck = Gauge(
            "docqa_documents_stuck_processing",
            "Documents processing on a worker that died, not handed on yet (-1: unknown)",
            registry=r,
        )
        self._unpublished = Gauge(
            "docqa_unpublished_chunks",
            "Chunks of indexed documents not in the published indexes yet (-1: unknown)",
            registry=r,
        )

    def bind(self, *, answers: AnswerService, db: Database, ingest: IngestQueue | None) -> None:
        self._queue_depth.set_function(lambda: answers.slot.queue_depth)
        self._model_busy.set_function(lambda: 1.0 if answers.slot.in_use else 0.0)
        self._ingest_depth.set_function(lambda: ingest.depth() if ingest is not None else 0)
        self._stuck.set_function(lambda: ingest.stuck_processing() if ingest is not None else 0)
        store = answers.retriever.reader.store
        self._unpublished.set_function(lambda: _unpublished_total(db, store))
        self.registry.register(_DocumentCounts(db))

    def observe_event(self, event: AnswerEvent) -> None:
        if isinstance(event, Done):
            self.questions.labels(event.mode, event.finish_reason).inc()
            if event.time_to_first_token_ms is not None:
                self.ttft.labels(event.mode).observe(event.time_to_first_token_ms / 1000.0)
            if event.tokens_per_s:
                self.tokens_per_s.observe(event.tokens_per_s)
            if event.queue_wait_ms is not None:
                self.queue_wait.observe(event.queue_wait_ms / 1000.0)
            if event.completion_tokens is not None:
                self.completion_tokens.inc(event.completion_tokens)
            if event.draft_tokens:
                kept = event.accepted_draft_tokens or 0
                self.draft_tokens.labels("accepted").inc(kept)
                self.draft_tokens.labels("rejected").inc(event.draft_tokens - kept)
        elif isinstance(event, ErrorEvent):
            self.questions.labels("unknown", event.code).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
