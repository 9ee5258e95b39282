"""What `docqa model info` says about the machine's int8 instructions."""

from __future__ import annotations

import platform
from pathlib import Path

from qa.cpu import cpu_flags, cpu_name, int8_instructions, name_of


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\nbogomips: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == set()
    assert cpu_flags(Path("/proc/cpuinfo"))  # this machine has some


def test_the_cpu_is_named_with_its_family_and_model(tmp_path: Path) -> None:
    two_cpus = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC\nflags\t\t: avx2\n\n"
        "processor\t: 1\ncpu family\t: 23\nmodel\t\t: 1\nmodel name\t: Other\n"
    )
    assert name_of(two_cpus) == "AMD EPYC (family 25, model 17)"
    # an ARM kernel prints neither a model name nor a family: still something to print
    assert name_of("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_name(tmp_path / "missing")
    if platform.machine() == "x86_64" and Path("/proc/cpuinfo").is_file():
        assert "(family " in cpu_name()  # this machine's own


def test_the_widest_int8_instructions_are_named() -> None:
    sapphire = {"avx2", "avx512_vnni", "amx_tile", "amx_int8"}
    assert int8_instructions(sapphire, amx_granted=True).summary() == (
        "AVX-512 VNNI; AMX-INT8: used by the dynamic kernel's matrix products"
    )
    assert "not granted" in int8_instructions(sapphire, amx_granted=False).amx
    assert int8_instructions({"avx2", "avx_vnni"}).best == "AVX-VNNI"
    zen1 = int8_instructions({"avx2"})
    assert zen1.best.startswith("AVX2 without VNNI") and "blockwise" in zen1.best
    assert zen1.amx == "absent"
    assert int8_instructions(set()).best.startswith("no AVX2")
