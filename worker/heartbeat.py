"""Worker heartbeats in Redis: which worker nodes are alive, to the second.

Every ``docqa worker`` renews ``docqa:heartbeat:<node>`` (expiring after
``worker_heartbeat_ttl_s``) every third of that from a thread of its main process
(``HeartbeatThread``, started when the worker is ready). A key that is gone means its worker
is gone: the reconciler hands that worker's ``processing`` documents to another one
(``worker.reconcile.orphaned_documents``) instead of waiting out the task time limit.

Absence proves nothing while Redis itself has been up for less than a TTL (restarted
without its data: every key is gone, live workers' too, until their next beat), nor when it
cannot be asked: ``alive`` then answers None and nothing is handed on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "docqa:heartbeat:"


class Heartbeats:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, ttl_s: int, *, timeout_s: float = 5.0) -> Heartbeats:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        return cls(client, ttl_s)

    def beat(self, node: str) -> None:
        self.client.set(KEY_PREFIX + node, str(time.time()), ex=self.ttl_s)

    def alive(self, nodes: Collection[str]) -> set[str] | None:
        """The nodes among ``nodes`` with a live heartbeat; None when Redis cannot tell
        (unreachable, or restarted less than a TTL ago)."""
        if not nodes:
            return set()
        ordered = list(nodes)
        try:
            uptime = int(self.client.info("server")["uptime_in_seconds"])
            if uptime < self.ttl_s:
                return None
            pipe = self.client.pipeline(transaction=False)
            for node in ordered:
                pipe.exists(KEY_PREFIX + node)
            found = pipe.execute()
        except redis.exceptions.RedisError:
            log.warning("cannot read worker heartbeats", exc_info=True)
            return None
        return {node for node, live in zip(ordered, found, strict=True) if live}

    def close(self) -> None:
        self.client.close()


class HeartbeatThread:
    """Renews one node's heartbeat until stopped (a daemon thread: it dies with its
    process, which is the point: a killed worker stops beating)."""

    def __init__(self, heartbeats: Heartbeats, node: str) -> None:
        self.heartbeats = heartbeats
        self.node = node
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docqa-heartbeat", daemon=True)

    def start(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        every = self.heartbeats.ttl_s / 3
        while True:
            try:
                self.heartbeats.beat(self.node)
            except redis.exceptions.RedisError as exc:  # Redis down: beat again later
                log.warning("heartbeat of %s not written: %s", self.node, exc)
            if self._stop.wait(every):
                return
