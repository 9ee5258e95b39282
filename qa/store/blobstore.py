"""Content-addressed store of original uploads.

A blob's path is derived only from the sha256 of its bytes (``ab/cd/abcd...``), so a client's
file name can never steer where anything is written. Writes go to a temp file in the same
directory, are fsynced, then renamed into place: a crash leaves either nothing or the whole
blob, never a torn one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from qa.errors import InvalidInput, NotFound, StorageError
from qa.store.fsutil import fsync_path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise InvalidInput(f"not a sha256 digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put_stream(self, stream: IO[bytes], *, max_bytes: int | None = None) -> tuple[str, int]:
        """Store everything ``stream`` yields; returns ``(sha256, size)``."""
        self.root.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(_CHUNK):
                    size += len(block)
                    if max_bytes is not None and size > max_bytes:
                        raise InvalidInput(f"file larger than the {max_bytes} byte limit")
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            final = self.path_for(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                tmp.unlink()
            else:
                os.replace(tmp, final)
                fsync_path(final.parent)
            return digest, size
        except OSError as exc:
            raise StorageError(f"could not store blob: {exc}") from exc
        finally:
            if tmp.exists():
                tmp.unlink()

    def put_file(self, path: Path, *, max_bytes: int | None = None) -> tuple[str, int]:
        try:
            with path.open("rb") as f:
                return self.put_stream(f, max_bytes=max_bytes)
        except FileNotFoundError as exc:
            raise NotFound(f"no such file: {path}") from exc

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        import io

        return self.put_stream(io.BytesIO(data))

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path_for(sha256).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} is missing") from exc

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def __iter__(self) -> Iterator[str]:
        for p in self.root.glob("??/??/*"):
            if _SHA256.match(p.name):
                yield p.name


def display_name(raw: str, *, max_len: int = 512) -> str:
    """A client-supplied file name made safe to store and show (never to open).

    Drops NULs and control characters, keeps the path's last components for context and
    removes ``..``/``.`` segments so the name cannot masquerade as a traversal.
    """
    cleaned = "".join(ch for ch in raw if ch.isprintable() and ch not in "\x00")
    parts = [p for p in re.split(r"[\\/]+", cleaned) if p not in ("", ".", "..")]
    name = "/".join(parts).strip() or "unnamed"
    if len(name) > max_len:
        name = "…" + name[-(max_len - 1) :]
    return name
