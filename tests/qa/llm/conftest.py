"""Session fixtures: one tiny random Qwen3 folder, built once as fp32 and once as INT8."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.llm.build import build_model
from qa.llm.generate import OnnxQwenGenerator
from tests.qa.llm.tiny_qwen import make_tiny_qwen3


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny_qwen3") / "hf")


@pytest.fixture(scope="session")
def built_fp32(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "fp32"
    build_model(tiny_hf, out, precision="fp32")
    return out


@pytest.fixture(scope="session")
def built_int8(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "int8"
    build_model(tiny_hf, out, precision="int8")
    return out


@pytest.fixture(scope="session")
def built_int8_dynamic(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "int8-dynamic"
    build_model(tiny_hf, out, precision="int8", int8_kernel="dynamic")
    return out


@pytest.fixture(scope="session")
def gen_fp32(built_fp32: Path) -> OnnxQwenGenerator:
    return OnnxQwenGenerator(built_fp32, threads=1)


@pytest.fixture(scope="session")
def gen_int8(built_int8: Path) -> OnnxQwenGenerator:
    return OnnxQwenGenerator(built_int8, threads=1)


@pytest.fixture(scope="session")
def torch_model(tiny_hf: Path) -> object:
    from transformers import Qwen3ForCausalLM

    return Qwen3ForCausalLM.from_pretrained(tiny_hf).eval()
