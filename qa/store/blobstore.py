"""Content-addressed store of original uploads.

A blob's path is derived only from the sha256 of its bytes (``ab/cd/abcd...``), so a client's
file name can never steer where anything is written. Writes go to a temp file in the same
directory, are fsynced, then linked into place: a crash leaves either nothing or the whole
blob, never a torn one. Whether a blob may be deleted is decided in the metadata DB
(``qa.store.blob_refs``), never here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from qa.errors import InvalidInput, NotFound, StorageError
from qa.store.fsutil import fsync_path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


INCOMING_PREFIX = ".incoming-"


@dataclass(frozen=True)
class Staged:
    """Bytes hashed into a temp file next to their final place (``BlobStore.staged``)."""

    store: BlobStore
    tmp: Path
    sha256: str
    size: int

    def place(self) -> None:
        """Move the bytes to their content address (a no-op when they are there already)."""
        final = self.store.path_for(self.sha256)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                return  # same bytes, same name: the copy there stays
            os.replace(self.tmp, final)
            fsync_path(final.parent)
        except OSError as exc:
            raise StorageError(f"could not store blob: {exc.strerror or exc}") from exc


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise InvalidInput(f"not a sha256 digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    @contextlib.contextmanager
    def staged(self, stream: IO[bytes], *, max_bytes: int | None = None) -> Iterator[Staged]:
        """Everything ``stream`` yields in a durable temp file, hashed; ``place()`` it.

        Nothing is in place until the caller, holding the blob's lock
        (``qa.store.blob_refs.claim_blob``), calls ``place()``: a release of the same bytes
        must not run between the file appearing and its document row being written.
        Whatever was not placed is removed on exit.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=INCOMING_PREFIX)
        tmp = Path(tmp_name)
        try:
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
            except OSError as exc:
                raise StorageError(f"could not store blob: {exc.strerror or exc}") from exc
            yield Staged(self, tmp, h.hexdigest(), size)
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path_for(sha256).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} is missing") from exc

    def delete(self, sha256: str) -> bool:
        """Remove the blob; whether there was one. Callers hold its lock (``blob_refs``)."""
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_path(path.parent)
        return True

    def incoming(self) -> Iterator[Path]:
        """Temp files of uploads being staged now, or of ones a crash interrupted."""
        if self.root.is_dir():
            yield from self.root.glob(f"{INCOMING_PREFIX}*")

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
