"""What a ``docqa worker`` does besides consuming its queues: when it is ready, and after
it stopped.

* ready (Celery's ``worker_ready``, in the main process, before "ready." is logged): start
  the heartbeat (``worker.heartbeat``); a worker consuming ``ingest`` sends again the
  documents an earlier run of the same node name left ``processing`` (it was killed: a
  node name belongs to one live worker at a time, ``docqa worker --name``); the index
  worker runs the reconciler at once, re-sending every reindex request (the message of
  the one a killed index worker held waits out the broker's visibility timeout).
* stopped (``docqa worker``'s main process, after Celery returned): the node's claims on
  documents still ``processing`` are released. Celery has requeued their tasks (SIGTERM's
  cold shutdown), so a restart must not send them a second time; only a worker that
  never got here (kill -9, a lost machine) leaves claims for its restart to take back.

Nothing happens in a worker not started by ``docqa worker`` (no node name configured).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from sqlalchemy import update

from qa.settings import Settings
from qa.store.db.engine import Database
from qa.store.db.models import DocStatus, Document
from worker.celery_app import ROUTES, app, app_settings
from worker.heartbeat import Heartbeats, HeartbeatThread
from worker.reconcile import reclaim_own

log = logging.getLogger(__name__)

#: app.conf keys ``docqa worker`` sets: this worker's node name and the queues it consumes
NODE_KEY = "docqa_worker_node"
QUEUES_KEY = "docqa_worker_queues"

_heartbeat: HeartbeatThread | None = None


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    node = app.conf.get(NODE_KEY)
    if not node:
        return
    worker_ready(app_settings(), node, list(app.conf.get(QUEUES_KEY) or []))


def worker_ready(settings: Settings, node: str, queues: list[str]) -> None:
    global _heartbeat
    assert settings.broker_url is not None  # docqa worker refuses to start without one
    heartbeats = Heartbeats.from_url(settings.broker_url, settings.worker_heartbeat_ttl_s)
    _heartbeat = HeartbeatThread(heartbeats, node).start()
    if ROUTES["docqa.ingest_document"] in queues:
        try:
            with _database(settings) as db:
                reclaim_own(
                    db,
                    node,
                    lambda doc_id: app.send_task("docqa.ingest_document", args=[doc_id]),
                )
        except Exception:  # the reconciler hands them on later (heartbeat, deadline)
            log.exception("%s: could not take back the documents of its earlier run", node)
    if ROUTES["docqa.reconcile"] in queues:
        app.send_task("docqa.reconcile", kwargs={"startup": True})


def release_claims(settings: Settings, node: str) -> int:
    """After the worker stopped: its ``processing`` documents are no longer its own."""
    with _database(settings) as db, db.session() as session:
        result = session.execute(
            update(Document)
            .where(Document.claimed_by == node, Document.status == DocStatus.PROCESSING)
            .values(claimed_by=None)
        )
        session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


class _database:
    """A short-lived connection from the worker's main process (its pool processes have
    their own; nothing of this one may be inherited by a pool process forked later)."""

    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings.db_url, run_migrations=False)

    def __enter__(self) -> Database:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.dispose()
