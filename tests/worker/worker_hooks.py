"""A real ``docqa worker`` whose sandboxed parser misbehaves on cue, for the fault tests.

Run as ``python -m tests.worker.worker_hooks --data-dir D worker ...`` (the arguments of
``docqa``). It installs a service factory whose parser calls ``act_on_content`` in the
sandbox child before each file, then runs the real CLI. The sandbox child imports this
module by name to find the hook, so it stays importable and light.

Blobs are stored under their hash, so the cue is the file's first bytes, not its name:

    #sleep <s>      parse normally after <s> seconds (a slow document)
    #segfault       the parser child segfaults (the sandbox reports "parser crashed")
    #killworker     the parser child SIGKILLs its parent, the worker pool process itself
                    (a file that takes its worker down, as an OOM kill would)

With ``TEST_PUBLISH_SLEEP_S`` in its environment, the worker sleeps that long before each
publish (an index worker that holds a publish message long enough to be killed with it).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.pipeline import IngestService
    from qa.retrieval.publish import Published
    from qa.settings import Settings


def act_on_content(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"#sleep "):
        time.sleep(float(head.split()[1]))
    elif head.startswith(b"#segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    elif head.startswith(b"#killworker"):
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(1)


def _service(settings: Settings) -> IngestService:
    from ingest.factory import build_ingest_service
    from ingest.sandbox import ParseLimits, SandboxedParser

    service = build_ingest_service(settings)
    service.parser = SandboxedParser(
        ParseLimits.from_settings(settings), before_parse=act_on_content
    )
    delay = float(os.environ.get("TEST_PUBLISH_SLEEP_S", "0"))
    if delay:
        publish = service.publish

        def slow_publish(collection_id: int) -> Published:
            time.sleep(delay)
            return publish(collection_id)

        service.publish = slow_publish  # type: ignore[method-assign]
    return service


def main() -> None:
    from cli.main import main as cli
    from worker import context

    context.set_service_factory(_service)
    cli()


if __name__ == "__main__":
    main()
