"""``docqa worker``: a Celery worker of the scaled mode (needs ``DOCQA_BROKER_URL``).

A typical deployment runs, besides ``docqa serve``:

    docqa worker --queues ingest --concurrency 2        # any number, on any machine
    docqa worker --queues index --beat                  # exactly one (the index writer)
    docqa worker --queues generate                      # one per machine holding the model
    docqa worker --queues summarize                     # any machine: no model loaded

A summarize worker sends its generations to the generation workers as batch requests, which
they interrupt for any question; consuming both queues in one process would let a whole
summary hold the process that questions need.

A worker's node name (``--name``; default ``docqa-<queues>@<host name>``) must be unique
among running workers and stay the same across its restarts: the documents it is
processing are recorded under it, and a worker starting under that name sends again those
its killed run left behind. Run two alike workers on one host with distinct ``--name``s.
Each worker also renews a heartbeat in Redis (``worker.heartbeat``); the reconciler hands
the documents of a worker whose heartbeat expired to the others.

The ``index`` queue has exactly one consumer process, so collections are published by one
writer: a worker consuming it refuses ``--concurrency`` above 1 (run ingest separately).
``--beat`` embeds the scheduler of the periodic reconciler; run it in exactly one worker
(the index worker is the natural place).

SIGTERM (``docker stop``, systemd) is a bounded stop: running tasks get ``--stop-grace``
seconds (default ``WORKER_SOFT_SHUTDOWN_S``) to finish and are acknowledged if they do;
the others are cancelled and go back to the queue for another worker. Plain Celery would
wait for them without bound, and the orchestrator's SIGKILL would then strand them until
the broker's visibility timeout.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from qa.errors import ConfigError, InvalidInput
from qa.settings import Settings

ALL_QUEUES = ("ingest", "index", "generate", "summarize")
#: queues whose work holds a big model or must have one writer: one process by default
SINGLE_PROCESS_QUEUES = frozenset({"index", "generate", "summarize"})


def _queues(spec: str) -> list[str]:
    names = [q.strip() for q in spec.split(",") if q.strip()]
    unknown = sorted(set(names) - set(ALL_QUEUES))
    if unknown or not names:
        got = ", ".join(unknown) or "(none)"
        raise InvalidInput(f"unknown queue(s) {got}; choose from {', '.join(ALL_QUEUES)}")
    return list(dict.fromkeys(names))


def _sigterm_is_cold_shutdown() -> None:
    """Make SIGTERM Celery's (soft, then) cold shutdown; must run before Celery's worker
    modules are imported, which read it once at import."""
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
    import billiard.common

    billiard.common.REMAP_SIGTERM = "SIGQUIT"
    if "celery.apps.worker" in sys.modules:  # imported already: too late to remap
        raise ConfigError("internal: celery.apps.worker was imported before docqa worker")


@click.command(name="worker")
@click.option(
    "--queues",
    "-Q",
    default="ingest",
    show_default=True,
    help=f"Comma-separated queues to consume: {', '.join(ALL_QUEUES)}.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes (default: one per core for ingest; 1 for index/generate/summarize).",
)
@click.option(
    "--name",
    default=None,
    help="Node name, unique among running workers and the same across restarts: a restarted"
    " worker takes back the documents its killed run was processing (default"
    " docqa-<queues>@<host name>).",
)
@click.option("--beat", is_flag=True, help="Also run the periodic reconciler's scheduler.")
@click.option(
    "--stop-grace",
    type=click.FloatRange(0, 3600),
    default=None,
    help="Seconds running tasks get to finish after SIGTERM before they are requeued"
    " (default 10; keep it below the orchestrator's kill grace period).",
)
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.pass_obj
def worker_command(
    settings: Settings,
    queues: str,
    concurrency: int | None,
    name: str | None,
    beat: bool,
    stop_grace: float | None,
    loglevel: str,
) -> None:
    """Run a Celery worker (scaled mode; needs DOCQA_BROKER_URL)."""
    if not settings.broker_url:
        raise ConfigError(
            "no broker configured: set DOCQA_BROKER_URL (e.g. redis://host:6379/0); without"
            " one, `docqa serve` processes uploads itself and no worker is needed"
        )
    names = _queues(queues)
    cores = os.cpu_count() or 1
    single = SINGLE_PROCESS_QUEUES & set(names)
    if concurrency is None:
        concurrency = 1 if single else cores
    from qa.answering.assembly import generation_on_workers

    if {"generate", "summarize"} <= set(names) and generation_on_workers(settings):
        # The summary would wait for its own process: its generations go to "generate".
        raise ConfigError(
            "consume generate and summarize in separate workers: a summary sends its"
            " generations to the generate queue (`docqa worker --queues generate` on the"
            " machine with the model, `docqa worker --queues summarize` beside it)"
        )
    if "index" in names and concurrency > 1:
        raise ConfigError(
            "the index queue has exactly one writer: consume it with --concurrency 1"
            " (run `docqa worker --queues index` beside the ingest workers)"
        )
    _sigterm_is_cold_shutdown()
    logging.getLogger().setLevel(loglevel.upper())

    from celery.utils.nodenames import host_format

    from worker.celery_app import configure
    from worker.context import THREADS_KEY
    from worker.lifecycle import NODE_KEY, QUEUES_KEY, release_claims

    # Expanded here (%h, %n, %d as Celery would): the name stored with a claim must be
    # the one the tasks see.
    node = host_format(name or f"docqa-{'-'.join(names)}@%h")
    if "@" not in node:
        raise InvalidInput(f"--name must look like name@host, got {node!r}")
    app = configure(settings)
    app.conf[NODE_KEY] = node
    app.conf[QUEUES_KEY] = names
    # Each pool process embeds with torch; N processes x all cores would oversubscribe.
    app.conf[THREADS_KEY] = max(1, cores // concurrency)
    if stop_grace is not None:
        app.conf.worker_soft_shutdown_timeout = stop_grace
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if {"ingest", "summarize"} & set(names):  # both embed; see preimport_runtime
        from qa.retrieval.embedder import preimport_runtime

        preimport_runtime(settings)
    argv = [
        "worker",
        f"--queues={','.join(names)}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--loglevel={loglevel.upper()}",
        f"--hostname={node}",
        # No worker-to-worker chatter: nothing here uses it, and it slows every start.
        "--without-mingle",
        "--without-gossip",
    ]
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    try:
        app.worker_main(argv)
    finally:
        if "ingest" in names:
            try:
                release_claims(settings, node)
            except Exception:  # a restart takes them back instead (a duplicate is a no-op)
                logging.getLogger(__name__).exception("could not release %s's claims", node)
