"""Real parts for the scaled-mode tests: ``docqa worker`` subprocesses, a private Redis.

    with RedisServer(tmp_path) as redis_server:          # its own port, no persistence
        env = worker_env(data_dir, redis_server.url(), postgres_url, slow=True)
        with WorkerProcess(env, data_dir, log_dir, queues="ingest,index", beat=True) as w:
            ...                                          # w.kill9(), w.sigterm(), w.log()

Workers run ``python -m tests.worker.worker_hooks`` (the real CLI plus a parser that
misbehaves on cue, see that module) in their own session, so ``kill9`` takes the whole
worker down the way a lost machine or an OOM-killed container would: main process, pool
processes and parser children at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import sqlalchemy as sa
from celery import Celery

from ingest.factory import build_ingest_service
from ingest.pipeline import IngestService
from qa.retrieval.embedder import Embedder
from qa.retrieval.index_store import IndexStore
from qa.settings import Settings
from qa.store.catalog import get_collection
from worker.celery_app import celery_config
from worker.celery_queue import CeleryIngestQueue
from worker.reconcile import published

REPO = Path(__file__).resolve().parents[2]

#: the test process and its workers agree on these (see ``worker_env``); the hard limits of
#: an ingest task (60 s, soft 30 s) and of a summary (64 s, soft 34 s) stay below the 65 s
#: visibility timeout, and the soft limits leave room for two cores shared with a second
#: test process (make test runs two). A test that waits on one of these timeouts sets its
#: own, shorter ones (``worker_env(..., **extra)``), like the fault tests.
TEST_SETTINGS = {
    "DOCQA_BROKER_VISIBILITY_TIMEOUT_S": "65",
    "DOCQA_INGEST_TASK_TIME_LIMIT_S": "60",
    "DOCQA_SUMMARIZE_TASK_TIME_LIMIT_S": "64",
    "DOCQA_RECONCILE_STUCK_AFTER_S": "10",
    "DOCQA_RECONCILE_INTERVAL_S": "5",
    "DOCQA_MAX_PROCESSING_ATTEMPTS": "3",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class RedisServer:
    """A private ``redis-server`` (no persistence) that a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 10, "redis-server to accept connections", every=0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it; everything it held (queues, unacked messages) is gone."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def worker_env(data_dir: Path, broker_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker (and the settings the test process must use too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update(TEST_SETTINGS)
    env.update(
        {
            "DOCQA_DATA_DIR": str(data_dir),
            "DOCQA_BROKER_URL": broker_url,
            "DOCQA_DATABASE_URL": database_url,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def settings_overrides(env: dict[str, str]) -> dict[str, str]:
    """``Settings(**...)`` keyword arguments equal to a worker environment's DOCQA_ vars."""
    return {k.removeprefix("DOCQA_").lower(): v for k, v in env.items() if k.startswith("DOCQA_")}


class WorkerProcess:
    """One ``docqa worker`` in its own session (so it can be killed as a whole)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        queues: str = "ingest,index",
        concurrency: int = 1,
        beat: bool = False,
        stop_grace: float | None = None,
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.args = [
            sys.executable,
            "-m",
            "tests.worker.worker_hooks",
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            "--loglevel=info",
        ]
        if beat:
            self.args.append("--beat")
        if stop_grace is not None:
            self.args.append(f"--stop-grace={stop_grace}")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, ready_timeout: float = 90) -> WorkerProcess:
        self.launch()
        return self.wait_ready(ready_timeout)

    def launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> WorkerProcess:
        proc = self.proc
        assert proc is not None, "launch() first"
        wait_until(
            lambda: " ready." in self.log() or proc.poll() is not None,
            timeout,
            "the worker to be ready",
        )
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL the whole worker: main process, pool processes, parser children."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._reap_group()

    def sigterm(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for tasks
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self.kill9()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _reap_group(self) -> None:
        """Pool or parser processes outliving their main process are killed too."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def started_together(*workers: WorkerProcess, ready_timeout: float = 90) -> Iterator[None]:
    """Start the workers at once, so that their start-ups (imports, models) overlap instead
    of queueing; wait until each is ready; stop them all on exit."""
    with contextlib.ExitStack() as stack:
        for worker in workers:
            stack.callback(worker.stop)
            worker.launch()
        for worker in workers:
            worker.wait_ready(ready_timeout)
        yield


@dataclass(frozen=True)
class DocRow:
    name: str
    status: str
    attempts: int
    chunk_count: int
    chunks: int  # rows in the chunks table
    error: str | None


def documents(database_url: str) -> dict[str, DocRow]:
    """Every document by name, with its chunk rows counted (read straight from the DB)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT d.original_name, d.status, d.attempts, d.chunk_count, d.error,"
                    " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
                    " FROM documents d"
                )
            ).all()
    finally:
        engine.dispose()
    return {r[0]: DocRow(r[0], r[1], r[2], r[3], int(r[5]), r[4]) for r in rows}


def chunk_texts(database_url: str, name: str) -> list[str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
                    " WHERE d.original_name = :name ORDER BY c.ordinal"
                ),
                {"name": name},
            ).all()
    finally:
        engine.dispose()
    return [r[0] for r in rows]


def statuses(database_url: str) -> dict[str, str]:
    return {name: row.status for name, row in documents(database_url).items()}


class Scaled:
    """The web side of the scaled mode, as ``docqa serve`` builds it: a ``CeleryIngestQueue``
    on a client app of its own (so tests with different brokers never share connections)."""

    def __init__(self, env: dict[str, str], embedder: Embedder) -> None:
        self.env = env
        self.settings = Settings(**settings_overrides(env))
        self.app = Celery("docqa-test-client")
        self.app.conf.update(celery_config(self.settings))
        self.service: IngestService = build_ingest_service(self.settings, embedder=embedder)
        self.queue = CeleryIngestQueue(self.service, self.app)
        self.db_url = self.settings.db_url

    def submit_file(self, path: Path, collection: str = "docs", name: str | None = None) -> None:
        with path.open("rb") as f:
            self.queue.submit(collection, f, name or path.name)

    def submit_text(self, name: str, text: str, collection: str = "docs") -> str:
        (upload,) = self.queue.submit(collection, io.BytesIO(text.encode()), name)
        assert upload.document_id is not None
        return upload.document_id

    def wait_done(self, timeout: float = 120) -> dict[str, str]:
        def done() -> bool:
            current = statuses(self.db_url)
            return bool(current) and all(s in ("indexed", "failed") for s in current.values())

        wait_until(done, timeout, "every document to be indexed or failed")
        return statuses(self.db_url)

    def index_count(self, collection: str = "docs") -> tuple[str | None, int | None]:
        """(current version, chunks it holds) of the collection's published index."""
        with self.service.db.session() as session:
            key = get_collection(session, collection).index_key
        current = published(IndexStore(self.settings.index_dir), key)
        return (current.version, current.count) if current else (None, None)

    def close(self) -> None:
        self.queue.close()
        self.app.close()
        self.service.db.dispose()


def private_redis_db(url: str) -> Iterator[str]:
    """Yield ``url`` after checking Redis answers, with that one db flushed before and after
    (other db numbers belong to other test modules). Skips locally, fails under CI."""
    import pytest
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis not reachable at {url}: {exc}")
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
