"""Summary jobs in the scaled mode: sent by the web side as ``docqa.summarize``, run by a
real ``docqa worker --queues summarize`` over the real Redis, jobs in the real PostgreSQL.

Redis: the shared server, database 12 (flushed before and after; override with
``DOCQA_TEST_REDIS_URL_SUMMARIZE``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.access import AccessService
from qa.accounts import AccountService
from qa.audit import AuditLog
from qa.db.models import Document
from qa.embedder import Embedder
from qa.errors import Unavailable
from qa.settings import Settings
from qa.summary_jobs import SummaryJobs
from tests.conftest import SAMPLES
from tests.worker.celery_support import (
    WorkerProcess,
    free_port,
    private_redis_db,
    settings_overrides,
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


def test_summary_jobs_run_on_a_summarize_worker(
    tmp_path: Path, broker_url: str, postgres_url: str, embedder: Embedder, built_int8: Path
) -> None:
    env = worker_env(tmp_path / "var", broker_url, postgres_url)
    settings = Settings(**settings_overrides(env))
    service = build_ingest_service(settings, embedder=embedder)
    app = Celery("docqa-test-summaries")
    app.conf.update(celery_config(settings))
    try:
        run_ingest(service, [SAMPLES / "travel-and-expenses.pdf"], "handbook")
        shutil.copytree(built_int8, settings.llm_dir)  # the worker's machine holds the model
        db = service.db
        with db.session() as s:
            doc_id = s.scalars(select(Document.id)).one()
        admin = AccountService(db).create_user("admin", "admin-password-1", "admin")
        jobs = SummaryJobs(db, AccessService(db), AuditLog(db), CeleryIngestQueue(service, app))

        # Sent while no worker runs: the messages wait in Redis, the rows in the DB.
        job = jobs.submit(admin, document_id=doc_id, max_statements=4)
        dropped = jobs.submit(admin, document_id=doc_id)
        assert jobs.cancel(admin, dropped["id"])["status"] == "cancelled"

        with WorkerProcess(env, tmp_path / "worker.log", queues="summarize") as worker:
            wait_until(
                lambda: jobs.get(admin, job["id"])["status"] not in ("queued", "running"),
                180,
                "the summary job to finish",
            )
            done = jobs.get(admin, job["id"])
            assert done["status"] == "done", (done["error"], worker.log()[-3000:])
            # The cancelled job's message is delivered too, and skipped.
            wait_until(lambda: worker.log().count("docqa.summarize") >= 4, 60, "both tasks")
        result = done["result"]
        assert result["model"] == "generative"  # the worker's model, not the web side's
        assert 1 <= len(result["statements"]) <= 4
        windows = [set(w["pages"]) for w in result["windows"]]
        assert all(any(set(s["pages"]) <= w for w in windows) for s in result["statements"])
        assert jobs.get(admin, dropped["id"])["status"] == "cancelled"
    finally:
        app.close()
        service.close()
        service.db.dispose()


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
        assert job["status"] == "failed" and job["error"].startswith("could not be queued")
    finally:
        app.close()
        service.close()
        service.db.dispose()
