"""Misbehaviour injected into the sandbox child (``SandboxedParser(before_parse=...)``).

The child imports this module by name, so it must stay importable and free of test state.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def misbehave(path: Path) -> None:
    """Act on the file's name: segfault, sleep, spin on the CPU or eat memory."""
    name = path.name
    if name.startswith("segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    elif name.startswith("sleep"):
        time.sleep(120)
    elif name.startswith("spin"):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pass
    elif name.startswith("hog"):
        hoard = []
        for _ in range(64):
            hoard.append(bytearray(256 * 1024 * 1024))
