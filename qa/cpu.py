"""The CPU's feature flags, and which int8 instructions onnxruntime's kernels can use.

``cpu_flags`` is read by the embedder (its quantization preset) and by ``docqa model info``;
``cpu_name`` names the machine beside every benchmark figure and in ``docqa model info``.

MLAS (onnxruntime's math library) picks its int8 kernels from the CPU's features at
start-up: the dynamic kernel's u8s8 GEMM (DynamicQuantizeMatMul) uses AMX tiles when the
CPU has AMX-INT8 *and* the Linux kernel grants the process the tile state (it falls back to
AVX-512 VNNI for small products), else AVX-512 VNNI, AVX-VNNI, or plain AVX2 (int8 pairs
summed in int16, which can saturate: the accuracy check catches it). The blockwise kernel
(MatMulNBits, int8 compute) uses AVX-512 VNNI, AVX-VNNI or AVX2. ``docqa model info``
shows this, because a figure measured on one machine says little about another.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_ARCH_GET_XCOMP_SUPP = 0x1021  # arch_prctl: the extended states the kernel supports
_XFEATURE_XTILEDATA = 18  # AMX tile data
_SYS_ARCH_PRCTL = 158  # x86-64


@dataclass(frozen=True)
class Int8Instructions:
    best: str  # the widest int8 dot-product instructions both kernels can use
    amx: str  # "used by the dynamic kernel", "not granted by the OS", or "absent"

    def summary(self) -> str:
        return f"{self.best}; AMX-INT8: {self.amx}"


def flags_of(cpuinfo: str) -> set[str]:
    """The first CPU's feature flags in the text of ``/proc/cpuinfo`` (x86 kernels print a
    ``flags`` line; ARM kernels print ``Features`` instead, which gives an empty set)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def name_of(cpuinfo: str) -> str:
    """The first CPU's model name with its family and model numbers: a cloud VM often names
    only "AMD EPYC", and the numbers are what tell a Zen 1 from a Zen 4 (x86 kernels)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if not key and fields:
            break  # the first CPU's block ends at its blank line
        fields.setdefault(key, value.strip())
    # not platform.processor(): on Linux it runs `uname -p` in a subprocess, for nothing more
    name = fields.get("model name") or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """This machine's CPU, named as ``name_of`` does."""
    try:
        return name_of(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return name_of("")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """This machine's CPU feature flags (empty where /proc/cpuinfo does not exist)."""
    try:
        return flags_of(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return set()


def os_grants_amx() -> bool:
    """Whether this Linux kernel supports the AMX tile state (processes can request it)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mask = ctypes.c_uint64(0)
        if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_GET_XCOMP_SUPP, ctypes.byref(mask)) != 0:
            return False  # kernel older than 5.16: no such request
    except (OSError, AttributeError):
        return False
    return bool(mask.value >> _XFEATURE_XTILEDATA & 1)


def int8_instructions(
    flags: Iterable[str] | None = None, amx_granted: bool | None = None
) -> Int8Instructions:
    have = set(cpu_flags() if flags is None else flags)
    if "avx512_vnni" in have:
        best = "AVX-512 VNNI"
    elif "avx_vnni" in have:
        best = "AVX-VNNI"
    elif "avx2" in have:
        best = "AVX2 without VNNI (the dynamic kernel may saturate; prefer --kernel blockwise)"
    else:
        best = "no AVX2: onnxruntime's slow generic int8 paths"
    if "amx_int8" not in have or "amx_tile" not in have:
        amx = "absent"
    elif os_grants_amx() if amx_granted is None else amx_granted:
        amx = "used by the dynamic kernel's matrix products"
    else:
        amx = "present but not granted by this Linux kernel (needs 5.16+)"
    return Int8Instructions(best, amx)
