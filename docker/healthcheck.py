"""Container health probes for docker/compose.yaml (exit status 0 = healthy).

    python healthcheck.py web      GET /readyz on this container's web server (200 = ready)
    python healthcheck.py worker   this container's Celery worker answers a control ping

``DOCQA_HEALTHCHECK_TIMEOUT_S`` (default 5) bounds each probe; keep it below the
orchestrator's health check timeout (10 s in the image and compose file).

The worker probe broadcasts Celery's ``ping`` on the configured broker and looks for a
reply from a node on this host: every container has its own hostname, and Celery names
its nodes ``<name>@<hostname>``. The ping is answered by the worker's main process, so a
worker busy with long tasks in its pool children is still healthy; a hung or disconnected
one is not.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request

#: seconds a probe may take; the worker probe waits half of it for ping replies (a
#: broadcast cannot know how many replies are coming, so it always waits that long)
TIMEOUT_S = float(os.environ.get("DOCQA_HEALTHCHECK_TIMEOUT_S", "5"))


def check_web(port: int) -> str | None:
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return None if resp.status == 200 else f"{url}: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:  # 503 = not ready (e.g. the DB is unreachable)
        return f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return f"{url}: {exc}"


def local_node(replies: list[dict[str, object]], hostname: str) -> str | None:
    """The first replying node whose host part is this machine's name."""
    names = {hostname, hostname.split(".", 1)[0]}
    for reply in replies:
        for node in reply:
            if node.partition("@")[2] in names:
                return node
    return None


def check_worker() -> str | None:
    from celery import Celery

    from qa.settings import Settings

    broker = Settings().broker_url
    if not broker:
        return "DOCQA_BROKER_URL is not set"
    app = Celery("docqa-healthcheck", broker=broker)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_timeout = TIMEOUT_S
    try:
        replies = app.control.ping(timeout=TIMEOUT_S / 2)
    except Exception as exc:  # broker unreachable: report it, never a traceback
        return f"ping failed: {type(exc).__name__}: {exc}"
    finally:
        app.close()
    hostname = socket.gethostname()
    if local_node(replies, hostname) is None:
        others = sorted(node for reply in replies for node in reply)
        return f"no worker on {hostname} answered (replies from: {others or 'none'})"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("web", "worker"):
        print("usage: healthcheck.py web|worker", file=sys.stderr)
        return 2
    if argv[1] == "web":
        problem = check_web(int(os.environ.get("DOCQA_PORT", "8000")))
    else:
        problem = check_worker()
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
