"""The services a worker process keeps between tasks, built lazily once per process.

Celery's prefork pool forks its processes from the main one. Database connection pools,
the sandboxed parser's child and torch's thread pool must not cross a fork, so each pool
process builds its own ``IngestService`` on its first task (not at import, not in the
parent) and rebuilds it when it finds itself in a different process than the one that
built it. The embedding model inside is the process-wide cached one (``get_embedder``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ingest.factory import build_ingest_service
from ingest.pipeline import IngestService
from qa.settings import Settings
from worker.celery_app import app, app_settings
from worker.per_process import PerProcess

log = logging.getLogger(__name__)

ServiceFactory = Callable[[Settings], IngestService]

#: app.conf key where ``docqa worker`` puts the torch threads each pool process may use
THREADS_KEY = "docqa_threads_per_process"


def _default_factory(settings: Settings) -> IngestService:
    return build_ingest_service(settings)


_factory: ServiceFactory = _default_factory


def _build() -> IngestService:
    _allow_children()
    _limit_threads()
    return _factory(app_settings())


def _close(service: IngestService) -> None:
    try:
        service.close()
    except Exception:  # closing is best effort; the next build starts clean anyway
        log.exception("closing the ingest service failed")


_service: PerProcess[IngestService] = PerProcess(_build, _close)


def set_service_factory(factory: ServiceFactory | None) -> None:
    """Build services with ``factory`` from now on (None: the default).

    A seam for tests, which run real workers whose parser misbehaves on cue; set it in the
    worker's main process before the pool forks.
    """
    global _factory
    _factory = factory or _default_factory
    reset()


def ingest_service() -> IngestService:
    """This process's ingest service (built on first use)."""
    return _service.get()


def reset() -> None:
    """Close and forget this process's service; the next task builds a fresh one.

    Called after a task was interrupted mid-way (soft time limit): the sandboxed parser may
    still owe an answer to the interrupted request and must not hand it to the next one.
    """
    _service.reset()


def _allow_children() -> None:
    """Let a pool process start the sandboxed parser's child with ``multiprocessing``.

    Celery's pool (billiard) installs its own process object as ``multiprocessing``'s
    current process in every pool process: daemonic, and with billiard's authkey type. With
    it, ``multiprocessing`` refuses to start children ("daemonic processes are not allowed
    to have children") and cannot pickle the authkey for "spawn". To ``multiprocessing``
    a pool process is the main process of its own children, so it gets a fresh main-process
    identity. (The daemon rule protects children from a parent that dies without cleanup;
    the parser child needs none: it exits when its pipe to the parent closes.)
    """
    from multiprocessing import process as mp_process

    current = mp_process.current_process()
    if type(current).__module__.split(".")[0] != "billiard":
        return
    main_class = next(
        c for c in mp_process.BaseProcess.__subclasses__() if c.__name__ == "_MainProcess"
    )
    mp_process._current_process = main_class()  # type: ignore[attr-defined]


def _limit_threads() -> None:
    """Split the cores between the pool's processes instead of each taking them all."""
    threads = app.conf.get(THREADS_KEY)
    if not threads:
        return
    import torch

    torch.set_num_threads(int(threads))
