"""``docqa serve``: the web app on gunicorn, with ingestion and the model in-process
(or, with a broker configured, enqueued for ``docqa worker`` processes).

Gunicorn's ``gthread`` worker gives every request its own thread, so a long answer stream
never blocks another request. There is exactly one worker process: the model is loaded
once and its slot is shared fairly between all streams (see ``qa.llm.slot``). Everything that
starts threads (onnxruntime, the ingest pool) is built inside the worker after the fork,
never in the master, because threads do not survive ``fork``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from qa.accounts.users import AccountService
from qa.settings import Settings
from qa.store.db.engine import Database

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> Flask:
    """The web app, with the ingest queue the settings ask for.

    No broker: the single-machine service, uploads processed by an in-process thread pool.
    A broker (``DOCQA_BROKER_URL``): uploads are stored here and processed by ``docqa
    worker`` processes; this process only enqueues (the same ``IngestQueue`` interface).
    """
    from ingest.factory import build_ingest_service
    from qa.answering.assembly import build_answer_service
    from qa.library.ingest_queue import IngestQueue
    from web.app import create_app
    from web.extensions import build_web_services
    from worker.embedded import EmbeddedIngestQueue

    ingest_service = build_ingest_service(settings)
    queue: IngestQueue
    if settings.broker_url:
        from worker.celery_app import configure
        from worker.celery_queue import CeleryIngestQueue

        queue = CeleryIngestQueue(ingest_service, configure(settings))
    else:
        embedded = EmbeddedIngestQueue(ingest_service)
        embedded.start()
        queue = embedded
    answers = build_answer_service(settings, db=ingest_service.db, embedder=ingest_service.embedder)
    if isinstance(queue, EmbeddedIngestQueue):
        from qa.summaries.service import SummaryService

        # Summaries share the answer service's model and slot: questions go first.
        queue.attach_summaries(SummaryService.from_answers(answers))
    services = build_web_services(settings, ingest=queue, answers=answers)
    if isinstance(queue, EmbeddedIngestQueue) and services.sign_in.has_directory:
        from qa.accounts.directory_sync import DirectorySyncLoop

        interval_s = settings.ldap_sync_minutes * 60
        services.directory_sync = DirectorySyncLoop(services.sign_in, interval_s).start()
    return create_app(settings, services=services)


#: the name earlier callers use; with no broker configured it is exactly that
build_embedded_app = build_app


def first_admin(settings: Settings) -> tuple[str, str] | None:
    """Create the first admin account on a fresh database; its password is shown once."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    try:
        return AccountService(db).ensure_first_admin()
    finally:
        db.dispose()


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings_ = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return build_app(self.settings_)


def serve(settings: Settings, *, host: str, port: int, threads: int) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        # Loading a 4B model takes a while; the worker must not be killed for it. Streams
        # themselves are not bounded by this (gthread workers heartbeat from their loop).
        "timeout": 300,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "docqa",
        # gunicorn's control socket defaults to one path per machine user, which two
        # servers (or a test run beside a demo) would fight over; we do not use it.
        "control_socket_disable": True,
    }
    _Server(settings, options).run()
