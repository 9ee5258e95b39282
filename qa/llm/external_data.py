"""Append-only writer of ONNX external data: tensors go to disk as soon as they exist.

Each tensor is appended to one data file at a page-aligned offset (so onnxruntime can
memory-map it) and represented in the graph by a ``TensorProto`` that only records
location/offset/length. The graph protobuf therefore stays a few hundred KB whatever the
model size, and the builder never keeps more than the tensor it is writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
from onnx import TensorProto, helper

_ALIGN = 4096  # page size: offsets on a page boundary can be mapped without copying
_INLINE_MAX = 1024  # tiny tensors (scalars, shape constants) stay inside model.onnx

_NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
}


class ExternalDataWriter:
    def __init__(self, data_path: Path) -> None:
        self.location = data_path.name
        self._file: BinaryIO = data_path.open("wb")
        self.bytes_written = 0

    def close(self) -> None:
        self._file.close()

    def _pad(self) -> None:
        pad = -self.bytes_written % _ALIGN
        if pad:
            self._file.write(b"\0" * pad)
            self.bytes_written += pad

    def begin(self) -> int:
        """Start a tensor that will be written in pieces; returns its offset."""
        self._pad()
        return self.bytes_written

    def append(self, array: npt.NDArray[np.generic]) -> None:
        # the array's own buffer, not a tobytes() copy of it (50 MB for a gate+up table)
        data = np.ascontiguousarray(array).data.cast("B")
        self._file.write(data)
        self.bytes_written += data.nbytes

    def proto(
        self, name: str, dtype: int, dims: tuple[int, ...], offset: int, length: int
    ) -> TensorProto:
        """A TensorProto pointing at ``[offset, offset+length)`` of the data file.

        Two protos may point at the same bytes (the tied embedding / lm_head).
        """
        return external_tensor(name, dtype, dims, self.location, offset, length)

    def tensor(self, name: str, array: npt.NDArray[np.generic]) -> TensorProto:
        """Write a whole array now (inline in the graph when tiny)."""
        dtype = _NP_TO_ONNX[array.dtype]
        if array.nbytes <= _INLINE_MAX:
            return helper.make_tensor(
                name, dtype, array.shape, np.ascontiguousarray(array).tobytes(), raw=True
            )
        offset = self.begin()
        self.append(array)
        return self.proto(name, dtype, tuple(array.shape), offset, array.nbytes)


def onnx_dtype(array_dtype: np.dtype[np.generic]) -> int:
    return _NP_TO_ONNX[array_dtype]


def external_tensor(
    name: str, dtype: int, dims: tuple[int, ...], location: str, offset: int, length: int
) -> TensorProto:
    """A TensorProto that records only where its bytes are in ``location``."""
    t = TensorProto()
    t.name = name
    t.data_type = dtype
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key = key
        entry.value = value
    return t


def external_span(t: TensorProto) -> tuple[str, int, int]:
    """(location, offset, length) of an external-data tensor."""
    ref = {e.key: e.value for e in t.external_data}
    return ref["location"], int(ref.get("offset", "0")), int(ref["length"])
