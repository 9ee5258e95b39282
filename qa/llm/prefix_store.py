"""The system prompt's KV on disk, so a process start does not prefill it again.

Every question starts with the same system turn (125 tokens with the default prompt), and
a process prefills it when it loads the model (``OnnxQwenGenerator.prefill_prefix``): 3.3 s
of a 10 s start of the 4B model on two cores. Its KV is the same at every start, so it is
kept beside the model's prepacked copy (``qa.llm.session``): the folder is per build, per
machine and per onnxruntime version, the conditions under which the kernels give the same
bits. A later start reads it (36 MB, milliseconds) instead.

A file is a plain ``.npz`` (no pickles) named by a hash of the model key and the tokens; it
is checked against both, and against the model's shapes, before use: anything that does not
match is ignored and prefilled as if it were missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.llm.kv_cache import KVSnapshot
from qa.store.fsutil import fsync_path

log = logging.getLogger(__name__)

#: system prompts kept per folder (an admin who tries a few keeps the newest)
KEEP = 4


class PrefixStore:
    def __init__(self, folder: Path, layers: int, shape: tuple[int, int], dtype: np.dtype) -> None:
        """``shape``: (kv heads, head dim) of one layer's cache; ``dtype``: its elements."""
        self.folder = folder
        self.layers = layers
        self.shape = shape
        self.dtype = dtype

    def _path(self, model_key: str, tokens: Sequence[int]) -> Path:
        h = hashlib.sha256(model_key.encode())
        h.update(np.asarray(tokens, dtype=np.int64).tobytes())
        return self.folder / f"prefix-{h.hexdigest()[:24]}.npz"

    def load(self, model_key: str, tokens: Sequence[int]) -> KVSnapshot | None:
        path = self._path(model_key, tokens)
        if not path.is_file():
            return None
        try:
            # our own handle: np.load leaves its file open when the zip is damaged
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
                stored = tuple(int(t) for t in data["tokens"])
                keys = tuple(data[f"k{i}"] for i in range(self.layers))
                values = tuple(data[f"v{i}"] for i in range(self.layers))
                key = str(data["model_key"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            log.warning("ignoring the stored system prompt KV %s: %s", path.name, exc)
            return None
        want = (self.shape[0], len(tokens), self.shape[1])
        if (
            key != model_key
            or stored != tuple(tokens)
            or any(a.shape != want or a.dtype != self.dtype for a in keys + values)
        ):
            log.warning("ignoring the stored system prompt KV %s: it does not match", path.name)
            return None
        return KVSnapshot(model_key, stored, keys, values)

    def save(self, snap: KVSnapshot) -> None:
        """Write ``snap`` (atomically); a failure only costs the next start a prefill."""
        path = self._path(snap.model_key, snap.tokens)
        arrays: dict[str, Any] = {f"k{i}": k for i, k in enumerate(snap.keys)}
        arrays.update({f"v{i}": v for i, v in enumerate(snap.values)})
        arrays["tokens"] = np.asarray(snap.tokens, dtype=np.int64)
        arrays["model_key"] = np.asarray(snap.model_key)
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".prefix-", suffix=".npz", dir=self.folder)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            fsync_path(Path(tmp))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not store the system prompt KV: %s", exc)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            return
        self._prune()

    def _prune(self) -> None:
        stored = sorted(self.folder.glob("prefix-*.npz"), key=lambda p: p.stat().st_mtime)
        for old in stored[:-KEEP]:
            old.unlink(missing_ok=True)
