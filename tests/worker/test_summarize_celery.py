"""Summary jobs in the scaled mode: sent by the web side as ``docqa.summarize``, run by a
real ``docqa worker --queues summarize`` whose generations run on a real
``docqa worker --queues generate``, over the real Redis, jobs in the real PostgreSQL.

Redis: the shared server, database 12 (flushed before and after; override with
``DOCQA_TEST_REDIS_URL_SUMMARIZE``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.accounts.access import AccessService
from qa.accounts.audit import AuditLog
from qa.accounts.users import AccountService, Principal
from qa.errors import Unavailable
from qa.llm.remote import RemoteGenerator
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.models import Document
from qa.summaries.jobs import SummaryJobs
from tests.conftest import SAMPLES
from tests.worker.celery_support import (
    RedisServer,
    WorkerProcess,
    free_port,
    private_redis_db,
    settings_overrides,
    started_together,
    wait_until,
    worker_env,
)
from worker.celery_app import celery_config
from worker.celery_queue import CeleryIngestQueue

REDIS_URL = os.environ.get("DOCQA_TEST_REDIS_URL_SUMMARIZE", "redis://127.0.0.1:6379/12")

pytestmark = pytest.mark.postgres


@pytest.fixture
def broker_url() -> Iterator[str]:
    yield from private_redis_db(REDIS_URL)


def tokenizer_only(model: Path, dest: Path) -> Path:
    """The model folder without its weights: all a summarize worker (or a web host) needs."""
    dest.mkdir(parents=True)
    for f in model.iterdir():
        if f.is_file() and not f.name.startswith("model.onnx"):  # prepacked/ holds weights
            shutil.copy2(f, dest / f.name)
    return dest


@dataclass
class Deployment:
    """The web side's view of a scaled deployment with one sample document ingested."""

    env: dict[str, str]  # a generation worker's environment (the model in its data dir)
    summarize_env: dict[str, str]  # a summarize worker's: the tokenizer-only model folder
    tokenizer_only: Path
    jobs: SummaryJobs
    admin: Principal
    doc_id: str


@contextlib.contextmanager
def deployment(
    tmp_path: Path,
    broker_url: str,
    postgres_url: str,
    embedder: Embedder,
    built_int8: Path,
    **extra: str,
) -> Iterator[Deployment]:
    env = worker_env(tmp_path / "var", broker_url, postgres_url, **extra)
    settings = Settings(**settings_overrides(env))
    service = build_ingest_service(settings, embedder=embedder)
    app = Celery("docqa-test-summaries")
    app.conf.update(celery_config(settings))
    try:
        run_ingest(service, [SAMPLES / "travel-and-expenses.pdf"], "handbook")
        shutil.copytree(built_int8, settings.llm_dir)  # the generation worker's machine
        light = tokenizer_only(built_int8, tmp_path / "tokenizer-only")
        db = service.db
        with db.session() as s:
            doc_id = s.scalars(select(Document.id)).one()
        admin = AccountService(db).create_user("admin", "admin-password-1", "admin")
        queue = CeleryIngestQueue(service, app)
        yield Deployment(
            env,
            {**env, "DOCQA_MODEL_DIR": str(light)},
            light,
            SummaryJobs(db, AccessService(db), AuditLog(db), queue),
            admin,
            doc_id,
        )
    finally:
        app.close()
        service.close()
        service.db.dispose()


def assert_cited_within_windows(result: dict[str, Any], most: int) -> None:
    """A generative summary of at most ``most`` statements, each citing pages of its window."""
    assert result["model"] == "generative"  # the generation worker's model
    assert 1 <= len(result["statements"]) <= most
    windows = [set(w["pages"]) for w in result["windows"]]
    assert all(s["pages"] for s in result["statements"])
    assert all(any(set(s["pages"]) <= w for w in windows) for s in result["statements"])


def test_summary_jobs_run_on_a_summarize_worker_and_make_way_for_questions(
    tmp_path: Path, broker_url: str, postgres_url: str, embedder: Embedder, built_int8: Path
) -> None:
    """The compose layout: a generation worker holds the model; a summarize worker holds
    only the tokenizer and sends its generations to it as batch requests, which questions
    sent meanwhile preempt; the summary still completes with checked page citations."""
    with deployment(tmp_path, broker_url, postgres_url, embedder, built_int8) as d:
        jobs, admin = d.jobs, d.admin
        # Sent while no worker runs: the messages wait in Redis, the rows in the DB.
        job = jobs.submit(admin, document_id=d.doc_id, max_statements=4)
        dropped = jobs.submit(admin, document_id=d.doc_id)
        assert jobs.cancel(admin, dropped.id).status == "cancelled"

        question = RemoteGenerator(
            d.tokenizer_only, broker_url, queue_timeout_s=30, stall_timeout_s=10
        )
        messages = [{"role": "user", "content": "What is the hotel limit in London?"}]
        generation = WorkerProcess(d.env, tmp_path / "generate.log", queues="generate")
        worker = WorkerProcess(d.summarize_env, tmp_path / "worker.log", queues="summarize")
        with started_together(generation, worker):
            asked = 0
            deadline = time.monotonic() + 180
            while jobs.get(admin, job.id).status in ("queued", "running"):
                assert time.monotonic() < deadline, worker.log()[-3000:]
                # Questions keep arriving while the summary runs (each takes the worker
                # first; with no pause between them the summary would wait for all).
                if asked < 300:
                    _, last = question.generate(messages, max_new_tokens=4, temperature=0.0)
                    assert last.finish_reason == "length"
                    asked += 1
                time.sleep(0.25)
            done = jobs.get(admin, job.id)
            assert done.status == "done", (done.error, worker.log()[-3000:])
            # The cancelled job's message is delivered too, and skipped.
            wait_until(lambda: worker.log().count("docqa.summarize") >= 4, 60, "both tasks")
            preempted = generation.log().count("'preempted'")
        result = done.result
        assert_cited_within_windows(result, 4)
        assert jobs.get(admin, dropped.id).status == "cancelled"
        # Questions kept coming: some of the summary's requests gave way to them and were
        # continued (each continuation counted by the summarizer).
        assert preempted >= 1 and result["timings"]["preemptions"] == preempted
        print(f"{asked} questions during the summary; {preempted} batch requests preempted")


def test_a_summary_whose_message_redis_lost_is_sent_again_by_the_reconciler(
    tmp_path: Path, postgres_url: str, embedder: Embedder, built_int8: Path
) -> None:
    """Redis restarted without its data after the job was accepted: the row in PostgreSQL
    is all that is left, and the reconciler (beat on the index worker) sends it again."""
    with (
        RedisServer(tmp_path / "redis") as redis_server,
        # the reconciler looks every 2 s for jobs queued longer than 3 s (not 5 s and 10 s)
        deployment(
            tmp_path,
            redis_server.url(),
            postgres_url,
            embedder,
            built_int8,
            DOCQA_RECONCILE_STUCK_AFTER_S="3",
            DOCQA_RECONCILE_INTERVAL_S="2",
        ) as d,
    ):
        job = d.jobs.submit(d.admin, document_id=d.doc_id, max_statements=3)
        redis_server.stop()  # everything it held is gone, the job's message too
        redis_server.start()
        log_dir = tmp_path / "logs"
        index = WorkerProcess(d.env, log_dir / "index.log", queues="index", beat=True)
        generation = WorkerProcess(d.env, log_dir / "generate.log", queues="generate")
        w = WorkerProcess(d.summarize_env, log_dir / "summarize.log", queues="summarize")
        with started_together(index, generation, w):
            wait_until(
                lambda: d.jobs.get(d.admin, job.id).status not in ("queued", "running"),
                120,
                "the reconciler to re-send the summary and a worker to finish it",
            )
            done = d.jobs.get(d.admin, job.id)
            assert done.status == "done", (done.error, w.log()[-3000:])
            assert "1 summary jobs" in index.log(), index.log()[-3000:]
        assert_cited_within_windows(done.result, 3)


def test_an_unreachable_broker_fails_the_job_with_a_clear_503(
    tmp_path: Path, embedder: Embedder, postgres_url: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = worker_env(tmp_path / "var", dead, postgres_url)
    settings = Settings(**settings_overrides(env))
    service = build_ingest_service(settings, embedder=embedder)
    app = Celery("docqa-test-summaries-dead")
    app.conf.update(celery_config(settings))
    try:
        run_ingest(service, [SAMPLES / "travel-and-expenses.pdf"], "handbook")
        db = service.db
        with db.session() as s:
            doc_id = s.scalars(select(Document.id)).one()
        admin = AccountService(db).create_user("admin", "admin-password-1", "admin")
        jobs = SummaryJobs(db, AccessService(db), AuditLog(db), CeleryIngestQueue(service, app))
        with pytest.raises(Unavailable, match="could not be queued") as err:
            jobs.submit(admin, document_id=doc_id)
        assert err.value.retry_after_s > 0
        (job,) = jobs.list(admin)
        assert job.status == "failed" and job.error.startswith("could not be queued")
    finally:
        app.close()
        service.close()
        service.db.dispose()
