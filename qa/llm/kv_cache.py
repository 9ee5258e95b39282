"""The live KV cache of one sequence, and a byte-bounded LRU of saved prefixes to reuse.

``KVBuffers`` holds one ``[1, kv_heads, capacity, head_dim]`` array per layer and per K/V,
float32 or int8 as the model was built (``qa.llm.kv_quant``). The runner binds the SAME
OrtValue as ``past`` input and ``present`` output, so GroupQueryAttention appends new
positions in place: a decode step never copies the cache.

``KVSessionCache`` keeps ``KVSnapshot``s (token ids + the KV of exactly those tokens):
the fixed system-prompt prefix, shared by every request, and the last state of each chat
(keyed by chat id). A request starts from the snapshot with the longest common token
prefix; KV at position ``i`` depends only on tokens ``0..i``, so any common prefix of a
snapshot is valid and reuse is exact.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: a cache array: float32, or int8 for a model built with ``kv_cache="int8"``
KV = npt.NDArray[np.float32] | npt.NDArray[np.int8]


@dataclass(frozen=True)
class KVSnapshot:
    model_key: str  # which built model produced it (never mix models)
    tokens: tuple[int, ...]
    keys: tuple[KV, ...]  # per layer, [kv_heads, len(tokens), head_dim]
    values: tuple[KV, ...]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys) + sum(a.nbytes for a in self.values)


class KVBuffers:
    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: type[np.generic] = np.float32,
    ) -> None:
        """``dtype``: the model's cache element type (int8 for ``kv_cache="int8"``)."""
        shape = (1, kv_heads, capacity, head_dim)
        self.capacity = capacity
        self.keys = [np.zeros(shape, dtype) for _ in range(layers)]
        self.values = [np.zeros(shape, dtype) for _ in range(layers)]
        self.length = 0  # valid positions

    def load(self, snap: KVSnapshot, length: int) -> None:
        """Copy the first ``length`` positions of ``snap`` in (``length <= capacity``)."""
        for dst, src in zip(self.keys, snap.keys, strict=True):
            dst[0, :, :length] = src[:, :length]
        for dst, src in zip(self.values, snap.values, strict=True):
            dst[0, :, :length] = src[:, :length]
        self.length = length

    def snapshot(self, model_key: str, tokens: Sequence[int]) -> KVSnapshot:
        n = len(tokens)
        if n > self.length:
            raise ValueError(f"snapshot of {n} tokens but only {self.length} are cached")
        return KVSnapshot(
            model_key,
            tuple(tokens),
            tuple(k[0, :, :n].copy() for k in self.keys),
            tuple(v[0, :, :n].copy() for v in self.values),
        )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


class KVSessionCache:
    """LRU of KV snapshots bounded by bytes: shared prefixes plus one entry per chat."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # key: ("prefix", tokens) or ("chat", chat_id)
        self._entries: OrderedDict[tuple[str, object], KVSnapshot] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(s.nbytes for s in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(
        self, model_key: str, tokens: Sequence[int], chat_id: str | None = None
    ) -> tuple[KVSnapshot | None, int]:
        """Best snapshot for ``tokens`` and how many leading tokens of it can be reused.

        At most ``len(tokens) - 1`` are reused: the last prompt token must run through the
        model to produce the next token's logits.
        """
        limit = len(tokens) - 1
        best: tuple[KVSnapshot | None, int, tuple[str, object] | None] = (None, 0, None)
        with self._lock:
            for key, snap in self._entries.items():
                if snap.model_key != model_key:
                    continue
                if key[0] == "chat" and key[1] != chat_id:
                    continue
                n = min(common_prefix(snap.tokens, tokens), limit)
                if n > best[1]:
                    best = (snap, n, key)
            if best[2] is not None:
                self._entries.move_to_end(best[2])
                self.hits += 1
            else:
                self.misses += 1
        return best[0], best[1]

    def has_prefix(self, model_key: str, tokens: Sequence[int]) -> bool:
        with self._lock:
            snap = self._entries.get(("prefix", tuple(tokens)))
        return snap is not None and snap.model_key == model_key

    def put_prefix(self, snap: KVSnapshot) -> None:
        self._put(("prefix", snap.tokens), snap)

    def put_chat(self, chat_id: str, snap: KVSnapshot) -> None:
        self._put(("chat", chat_id), snap)

    def drop_chat(self, chat_id: str) -> None:
        with self._lock:
            self._entries.pop(("chat", chat_id), None)

    def _put(self, key: tuple[str, object], snap: KVSnapshot) -> None:
        if snap.nbytes > self.max_bytes:
            return  # would evict everything and still not fit
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = snap
            total = sum(s.nbytes for s in self._entries.values())
            while total > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                total -= old.nbytes
