"""Block-wise symmetric INT8 quantization in the layout ``com.microsoft.MatMulNBits`` reads.

For a weight ``W`` of shape ``(N, K)`` (PyTorch ``Linear`` layout: out x in) each row is cut
into blocks of ``block_size`` along K; a block stores ``round(w / s) + 128`` as uint8 with
``s = max|w| / 127``. With no ``zero_points`` input MatMulNBits assumes 128 for 8 bits, so
the zero point costs no memory. The packed data ``(N, K/bs, bs)`` is byte-for-byte the
``(N, K)`` uint8 table ``GatherBlockQuantized`` reads (bits=8, quantize_axis=1), which lets
the tied embedding and lm_head share one copy on disk.

``quantize_channels`` is the other kernel's weight: one scale per output row, int8.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def k_blocks(k: int, block_size: int) -> int:
    return -(-k // block_size)


def quantize_rows(
    w: npt.NDArray[np.float32], block_size: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """``(N, K)`` float32 -> packed ``(N, K/bs, bs)`` uint8 and ``(N, K/bs)`` float32 scales."""
    n, k = w.shape
    nb = k_blocks(k, block_size)
    if nb * block_size != k:  # zero-pad K; padded weights quantize to exactly the zero point
        w = np.pad(w, ((0, 0), (0, nb * block_size - k)))
    blocks = w.reshape(n, nb, block_size)
    amax = np.abs(blocks).max(axis=2)
    scales = (amax / 127.0).astype(np.float32)
    # an all-zero block gets scale 1 so the division below stays finite (it stores 128s)
    safe = np.where(scales == 0, np.float32(1.0), scales)
    q = np.rint(blocks / safe[:, :, None])
    np.clip(q, -127, 127, out=q)
    q += 128
    packed = q.astype(np.uint8)
    return packed, scales


def quantize_channels(
    w: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """``(N, K)`` float32 -> ``(N, K)`` int8 and ``(N,)`` float32 scales, one symmetric scale
    per output row (``max|w| / 127``): DynamicQuantizeMatMul's weight. Rows are
    independent, so any row range quantizes the same alone as inside the whole matrix."""
    scales = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    # an all-zero row gets scale 1 so the division below stays finite (it stores zeros)
    safe = np.where(scales == 0, np.float32(1.0), scales)
    q = np.rint(w / safe[:, None])
    np.clip(q, -127, 127, out=q)
    return q.astype(np.int8), scales
