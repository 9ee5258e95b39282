"""``docqa.summarize``: run one summary job (a row of the jobs table) on a worker.

Thin: the job row holds everything (target, options); ``SummaryRunner.run`` claims it,
runs it and leaves it done, failed or cancelled, and is safe to run again for the same job
(a task redelivered after its worker died restarts the job; a finished one is skipped).

Each worker process keeps its own runner: database engine, embedder and generator, built
on its first task (never in the parent before the fork). With generation on workers (the
scaled default) a summarize worker holds no model: its generations are batch requests on
the ``generate`` queue, which a generation worker interrupts for any question (see
``qa.llm.remote``), so summaries run on any machine and one model per machine serves
both. With ``DOCQA_GENERATION=local`` the process loads the model itself.
"""

from __future__ import annotations

from celery import Task

from qa.answering.assembly import load_summary_generator
from qa.retrieval.embedder import get_embedder
from qa.store.db.engine import Database
from qa.summaries.jobs import SummaryRunner
from qa.summaries.service import SummaryService
from worker.celery_app import app, app_settings
from worker.per_process import PerProcess

TASK = "docqa.summarize"


def _build_runner() -> SummaryRunner:
    settings = app_settings()
    db = Database(settings.db_url)
    generator = load_summary_generator(settings)
    return SummaryRunner(db, SummaryService(db, get_embedder(settings), generator))


_runner: PerProcess[SummaryRunner] = PerProcess(_build_runner)


def runner() -> SummaryRunner:
    """This process's runner (built on first use, rebuilt after a fork)."""
    return _runner.get()


@app.task(name=TASK, bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def summarize(self: Task, job_id: str) -> str:
    return runner().run(job_id)
