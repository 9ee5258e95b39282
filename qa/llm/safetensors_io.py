"""Memory-mapped reading of (sharded) safetensors checkpoints, one tensor at a time.

The format is trivial (8-byte little-endian header length, a JSON header of
``name -> {dtype, shape, data_offsets}``, raw row-major data), so it is read directly with
``numpy.memmap``: no torch import is needed at build time, and bfloat16 (which numpy lacks)
is widened to float32 by a bit shift. Only the tensor being converted is ever resident.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qa.errors import ConfigError, ModelBuildError

# safetensors dtype -> (numpy dtype of the raw data, bytes per element)
_DTYPES: dict[str, np.dtype[np.generic]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 on read
}


@dataclass(frozen=True)
class _Entry:
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


class SafetensorsCheckpoint:
    """All tensors of a checkpoint folder (``model.safetensors`` or an indexed shard set)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._entries: dict[str, _Entry] = {}
        for shard in self._shard_files(folder):
            self._read_header(shard)

    @staticmethod
    def _shard_files(folder: Path) -> list[Path]:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{index}: not a safetensors index ({exc})") from exc
            names = sorted(set(weight_map.values()))
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise ConfigError(f"{folder}: missing safetensors shards: {', '.join(missing)}")
            return [folder / n for n in names]
        single = folder / "model.safetensors"
        if single.is_file():
            return [single]
        found = sorted(folder.glob("*.safetensors"))
        if not found:
            raise ConfigError(
                f"{folder}: no safetensors weights (model.safetensors or an index); "
                "PyTorch .bin checkpoints are not supported"
            )
        return found

    def _read_header(self, path: Path) -> None:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ConfigError(f"{path}: truncated safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8:
                raise ConfigError(f"{path}: corrupt safetensors header")
            try:
                header = json.loads(f.read(n))
            except ValueError as exc:
                raise ConfigError(f"{path}: corrupt safetensors header ({exc})") from exc
        base = 8 + n
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = (int(x) for x in meta["data_offsets"])
            if base + end > size:
                raise ConfigError(f"{path}: tensor {name} runs past the end of the file")
            self._entries[name] = _Entry(
                path,
                str(meta["dtype"]),
                tuple(int(d) for d in meta["shape"]),
                base + start,
                base + end,
            )

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> Iterator[str]:
        return iter(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entry(name).shape

    def dtype(self, name: str) -> str:
        return self._entry(name).dtype

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ModelBuildError(f"{self.folder}: tensor {name!r} not in the checkpoint") from None

    def float32(self, name: str) -> npt.NDArray[np.float32]:
        """The whole tensor as a fresh float32 array."""
        rows = self.shape(name)[0] if self.shape(name) else 1
        return self.float32_rows(name, 0, rows)

    def float32_rows(self, name: str, start: int, stop: int) -> npt.NDArray[np.float32]:
        """Rows ``[start, stop)`` (first axis) as a fresh float32 array.

        Large tensors (the 151,936 x 2,560 embedding) are converted in row blocks so the
        builder never holds a whole float32 copy of one.
        """
        e = self._entry(name)
        try:
            raw_dtype = _DTYPES[e.dtype]
        except KeyError:
            raise ModelBuildError(
                f"tensor {name!r} has unsupported dtype {e.dtype} (supported: F32, F16, BF16)"
            ) from None
        count = int(np.prod(e.shape, dtype=np.int64))
        if count * raw_dtype.itemsize != e.end - e.start:
            raise ModelBuildError(f"tensor {name!r}: size does not match its shape and dtype")
        shape = e.shape or (1,)
        row = int(np.prod(shape[1:], dtype=np.int64))
        stop = min(stop, shape[0])
        if count == 0 or stop <= start:
            return np.zeros((max(stop - start, 0), *shape[1:]), np.float32)
        raw = np.memmap(
            e.path,
            dtype=raw_dtype,
            mode="r",
            offset=e.start + start * row * raw_dtype.itemsize,
            shape=((stop - start) * row,),
        )
        if e.dtype == "BF16":
            out = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            out = raw.astype(np.float32)
        del raw  # drop the mapping now; the pages it touched can be reclaimed
        return out.reshape((stop - start, *shape[1:]) if e.shape else ())
