"""The KV cache's element type, and the static scales an int8 cache is quantized with.

A float32 cache costs ``layers x kv_heads x head_dim x 2 x 4`` bytes per token: 288 KiB on
Qwen3-4B, 9.7 GB for the 32,768-token window, more than the model itself. ONNX Runtime's
GroupQueryAttention stores the cache as int8 with one fixed scale per channel
(``k_quant_type``/``v_quant_type`` ``PER_CHANNEL``, CPU kernel included), a quarter of
that: 72 KiB per token, 2.4 GB at 32K.

The scales are fixed when the model is built, so they come from the source weights run
on the calibration text (``qa.llm.reference``), with a margin for what that text did not
reach:

* keys: the cache holds them after rotary, which turns each channel pair (i, i + D/2) by
  a position-dependent angle. The pair's length is what rotation keeps, so the bound of
  both channels is the longest pair seen: a scale that holds at every position, not only
  at the calibration text's 512. Qwen3's k_norm keeps those lengths steady.
* values: the largest magnitude per channel.

An element beyond ``KV_MARGIN`` times what calibration saw is clipped to +-127 steps.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

KVCache = Literal["fp32", "int8"]
KV_CACHES: tuple[KVCache, ...] = ("fp32", "int8")
F32 = npt.NDArray[np.float32]

#: headroom over the calibration text's largest magnitudes: costs log2(1.5) = 0.6 bits of
#: resolution, and keeps what the text did not reach from being clipped
KV_MARGIN = 1.5
#: a channel calibration never moved still gets a usable step (a zero scale would
#: divide by zero in the kernel)
_MIN_BOUND = 1e-3


def bytes_per_token(kind: str, layers: int, kv_heads: int, head_dim: int) -> int:
    """Cache bytes one token costs (keys and values, every layer)."""
    return layers * kv_heads * head_dim * 2 * (1 if kind == "int8" else 4)


def numpy_dtype(kind: str) -> type[np.generic]:
    return np.int8 if kind == "int8" else np.float32


def key_bounds(k: F32) -> F32:
    """``k`` (kv_heads, S, D) normalized keys before rotary -> (kv_heads, D): per channel,
    the longest (i, i + D/2) pair, which no rotation can lengthen."""
    half = k.shape[-1] // 2
    pair = np.sqrt(np.square(k[..., :half]) + np.square(k[..., half:])).max(axis=1)
    return np.concatenate([pair, pair], axis=-1).astype(np.float32)


def value_bounds(v: F32) -> F32:
    """``v`` (kv_heads, S, D) -> (kv_heads, D): the largest magnitude per channel."""
    out: F32 = np.abs(v).max(axis=1).astype(np.float32)
    return out


def scales(bounds: F32) -> F32:
    """Bounds (any shape) -> the int8 step per channel: bound x margin / 127."""
    return (np.maximum(bounds, _MIN_BOUND) * KV_MARGIN / 127.0).astype(np.float32)


__all__ = [
    "KV_CACHES",
    "KV_MARGIN",
    "KVCache",
    "bytes_per_token",
    "key_bounds",
    "numpy_dtype",
    "scales",
    "value_bounds",
]
