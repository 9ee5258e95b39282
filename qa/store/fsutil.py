"""Small durable-file helpers shared by the blob store, the index store and the model build."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 1 << 20


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (which makes renames/creations inside it durable).

    On Linux a directory is fsynced through a read-only descriptor, like a file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()
