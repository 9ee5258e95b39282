"""The Celery app of the scaled mode, configured from the same settings as the web app.

    queue       tasks                                   workers
    ingest      docqa.ingest_document                   any number, any machine
    index       docqa.publish_collection, reconcile     exactly one (the one index writer)
    generate    docqa.generate                          machines holding the model
    summarize   docqa.summarize                         machines holding the model

Redis is broker and result store, never a database: every task takes ids and reads its
input from the metadata DB, so a lost message loses nothing the reconciler cannot redo.
Tasks acknowledge late and are rejected when their worker dies, so a killed worker's task is
delivered again; the hard time limit stays below the broker's visibility timeout, so a task
is never redelivered while it still runs.

Task modules register on the module-level ``app`` when imported; ``configure`` applies
settings (``docqa worker`` and ``docqa serve`` call it; nothing connects at import time).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from qa.errors import ConfigError
from qa.settings import Settings

QUEUES = ("ingest", "index", "generate", "summarize")

#: task name -> queue; web and workers only ever refer to tasks by these names
ROUTES = {
    "docqa.ingest_document": "ingest",
    "docqa.publish_collection": "index",
    "docqa.reconcile": "index",
    "docqa.directory_sync": "index",
    # a scan may hash for minutes: not on the index queue, whose one worker publishes
    "docqa.folder_sync": "ingest",
    "docqa.generate": "generate",
    "docqa.summarize": "summarize",
}

#: modules whose import registers tasks (and worker signal handlers) on ``app``
TASK_MODULES = [
    "worker.tasks",
    "worker.tasks_generate",
    "worker.tasks_summarize",
    "worker.lifecycle",
]

#: seconds a worker told to stop (SIGTERM) lets its running tasks finish before requeueing
WORKER_SOFT_SHUTDOWN_S = 10.0

app = Celery("docqa")


def soft_time_limit_s(hard_s: int, soft_s: int | None, what: str) -> int:
    """A task's soft limit: the configured one, else 30 s below the hard one (at least 10 s,
    or half a hard limit under 20 s). It must come before the hard limit, or the task never
    gets to record why it stopped."""
    soft = soft_s if soft_s is not None else max(min(10, hard_s // 2), hard_s - 30)
    if soft >= hard_s:
        raise ConfigError(
            f"the {what} task's soft time limit ({soft} s) must stay below its hard time"
            f" limit ({hard_s} s)"
        )
    return soft


def celery_config(settings: Settings) -> dict[str, Any]:
    if not settings.broker_url:
        raise ConfigError("no broker configured: set DOCQA_BROKER_URL (e.g. redis://host:6379/0)")
    visibility = settings.broker_visibility_timeout_s
    longest = max(settings.ingest_task_time_limit_s, settings.summarize_task_time_limit_s)
    if longest >= visibility:
        raise ConfigError(
            f"task time limits ({longest} s) must stay below the broker visibility timeout"
            f" ({visibility} s), or a running task would be delivered a second time"
        )
    ingest_soft = soft_time_limit_s(
        settings.ingest_task_time_limit_s, settings.ingest_task_soft_time_limit_s, "ingest"
    )
    summarize_soft = soft_time_limit_s(
        settings.summarize_task_time_limit_s, settings.summarize_task_soft_time_limit_s, "summarize"
    )
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.broker_url,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            # A task of a killed worker is restored once the visibility timeout has passed,
            # by a periodic sweep of the surviving workers; kombu's default sweep runs only
            # every 100 s. (Added by celery-ingest.)
            "unacked_restore_interval": max(1, min(60, visibility // 10)),
            "unacked_restore_throttle": 1,
            # An unreachable broker fails an enqueue in seconds, not after TCP's minutes.
            "socket_connect_timeout": 5,
        },
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_time_limit": settings.ingest_task_time_limit_s,
        "task_soft_time_limit": ingest_soft,
        # A summary runs much longer than one document's ingest: its own limits (applied
        # when the task binds, i.e. on the first use after ``configure``). (summaries)
        "task_annotations": {
            "docqa.summarize": {
                "time_limit": settings.summarize_task_time_limit_s,
                "soft_time_limit": summarize_soft,
            }
        },
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
        "task_default_queue": "ingest",
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 24 * 3600,
        # One task at a time per process: a long parse must not hold others hostage.
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        # ``docqa worker`` maps SIGTERM to Celery's cold shutdown: running tasks get this
        # long to finish (and are acknowledged), then they are cancelled and requeued for
        # another worker. Keep it below the orchestrator's kill grace period.
        "worker_soft_shutdown_timeout": WORKER_SOFT_SHUTDOWN_S,
        "beat_schedule": _beat_schedule(settings),
    }


def _beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    schedule: dict[str, dict[str, object]] = {
        "reconcile": {"task": "docqa.reconcile", "schedule": settings.reconcile_interval_s},
        "folder-sync": {"task": "docqa.folder_sync", "schedule": settings.sync_check_s},
    }
    if settings.ldap_url:
        schedule["directory-sync"] = {
            "task": "docqa.directory_sync",
            "schedule": settings.ldap_sync_minutes * 60,
        }
    return schedule


def configure(settings: Settings) -> Celery:
    """Point ``app`` at the configured broker and load the task modules."""
    app.conf.update(celery_config(settings))
    app.conf.docqa_settings = settings
    app.loader.import_default_modules()
    for module in TASK_MODULES:
        __import__(module)
    return app


def app_settings() -> Settings:
    settings = app.conf.get("docqa_settings")
    if not isinstance(settings, Settings):
        raise ConfigError("the Celery app is not configured; call worker.celery_app.configure")
    return settings
