"""The builder: artifact layout, manifest, atomic replacement, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa.errors import ConfigError, DocqaError, InvalidInput, ModelBuildError, ModelNotBuilt
from qa.llm.build import build_model
from qa.llm.generate import OnnxQwenGenerator
from qa.llm.manifest import ModelManifest, model_label
from qa.llm.quant import quantize_rows
from tests.qa.llm.tiny_qwen import REAL_FILES, REAL_QWEN3


def copy_hf(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_built_folder_has_model_tokenizer_and_manifest(built_int8: Path, tiny_hf: Path) -> None:
    for name in ("model.onnx", "model.onnx.data", "docqa_model.json"):
        assert (built_int8 / name).is_file(), name
    # the real folder's tokenizer, template and generation config travel unchanged
    for name in REAL_FILES:
        assert (built_int8 / name).read_bytes() == (REAL_QWEN3 / name).read_bytes(), name
    m = ModelManifest.read(built_int8)
    cfg = json.loads((tiny_hf / "config.json").read_text())
    assert m.spec.head_dim == 32 != cfg["hidden_size"] // cfg["num_attention_heads"]
    assert (m.spec.num_layers, m.spec.num_heads, m.spec.num_kv_heads) == (2, 4, 2)
    assert m.spec.vocab_size == cfg["vocab_size"] and m.precision == "int8"
    assert m.block_size == 32 and m.accuracy_level == 4
    assert m.context_length == cfg["max_position_embeddings"]
    assert m.eos_token_ids == [151645, 151643]  # config's, then generation_config's
    assert len(m.source_fingerprint) == 16
    # answers name their model: the source folder (named after the model) and precision
    assert m.label == f"{tiny_hf.name} (INT8)"
    assert model_label({"source": "/srv/Qwen3-4B-Instruct-2507", "precision": "fp32"}) == (
        "Qwen3-4B-Instruct-2507 (FP32)"
    )
    # the graph protobuf holds no weights; they are in the external data file
    assert (built_int8 / "model.onnx").stat().st_size < 100_000


def test_rebuild_replaces_atomically_and_leaves_no_temp_dirs(tiny_hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    build_model(tiny_hf, out, precision="fp32")
    first = ModelManifest.read(out).built_at
    steps: list[tuple[int, int, str]] = []
    build_model(tiny_hf, out, precision="int8", progress=lambda *a: steps.append(a))
    assert ModelManifest.read(out).precision == "int8" and first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert steps[0][0] == 0 and steps[-1][0] == steps[-1][1]


def test_failed_build_keeps_the_previous_model(tiny_hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    build_model(tiny_hf, out, precision="fp32")
    hf = copy_hf(tiny_hf, tmp_path / "hf")
    cfg = json.loads((hf / "config.json").read_text())
    cfg["intermediate_size"] = 96  # no longer matches the weights
    (hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelBuildError, match="shape"):
        build_model(hf, out)
    assert ModelManifest.read(out).precision == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "model"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(tmp_path / "nope", tmp_path / "out")


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.json"):
        build_model(tmp_path, tmp_path / "out")


def test_corrupted_config(tiny_hf: Path, tmp_path: Path) -> None:
    hf = copy_hf(tiny_hf, tmp_path / "hf")
    (hf / "config.json").write_text('{"model_type": "qwen3", ')
    with pytest.raises(ConfigError, match="unreadable config"):
        build_model(hf, tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "message"),
    [("[151645]", "generation config is not a JSON object"), ("{", "unreadable generation")],
)
def test_broken_generation_config(tiny_hf: Path, tmp_path: Path, text: str, message: str) -> None:
    hf = copy_hf(tiny_hf, tmp_path / "hf")
    (hf / "generation_config.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_model(hf, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_qwen3_config(tiny_hf: Path, tmp_path: Path) -> None:
    hf = copy_hf(tiny_hf, tmp_path / "hf")
    cfg = json.loads((hf / "config.json").read_text())
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="not a Qwen3 model"):
        build_model(hf, tmp_path / "out")


def test_missing_safetensors_shard(tiny_hf: Path, tmp_path: Path) -> None:
    hf = copy_hf(tiny_hf, tmp_path / "hf")
    (hf / "model.safetensors").rename(hf / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (hf / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"missing safetensors shards: model-00002"):
        build_model(hf, tmp_path / "out")


def test_no_weights_at_all(tiny_hf: Path, tmp_path: Path) -> None:
    hf = copy_hf(tiny_hf, tmp_path / "hf")
    (hf / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no safetensors weights"):
        build_model(hf, tmp_path / "out")


def test_unsupported_weight_dtype(tiny_hf: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    hf = copy_hf(tiny_hf, tmp_path / "hf")
    tensors = load_file(hf / "model.safetensors")
    tensors = {k: v.astype(np.float64) for k, v in tensors.items()}
    save_file(tensors, hf / "model.safetensors")
    with pytest.raises(ModelBuildError, match="unsupported dtype F64"):
        build_model(hf, tmp_path / "out")


def test_bad_build_options(tiny_hf: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        build_model(tiny_hf, tmp_path / "o", block_size=24)
    with pytest.raises(InvalidInput):
        build_model(tiny_hf, tmp_path / "o", precision="int4")  # type: ignore[arg-type]


def test_generator_on_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotBuilt) as info:
        OnnxQwenGenerator(tmp_path)
    assert isinstance(info.value, DocqaError) and "docqa model build" in str(info.value)


def test_int8_quantization_round_trips_within_half_a_step() -> None:
    w = np.random.default_rng(0).normal(size=(8, 80)).astype(np.float32)  # K not /32: padded
    packed, scales = quantize_rows(w, 32)
    assert packed.shape == (8, 3, 32) and scales.shape == (8, 3)
    deq = (packed.astype(np.float32) - 128) * scales[:, :, None]
    err = np.abs(deq.reshape(8, 96)[:, :80] - w)
    assert (err <= scales.repeat(32, axis=1)[:, :80] / 2 + 1e-6).all()
    assert (packed.reshape(8, 96)[:, 80:] == 128).all()  # padding decodes to exactly 0


def test_dynamic_weights_quantized_in_row_chunks_equal_the_whole_matrix(
    tiny_hf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder quantizes a few rows at a time straight into the transposed (K, N)
    table; chunks that split gate from up and rows mid-tensor must change no byte."""
    import onnx
    from onnx import numpy_helper

    from qa.llm import graph
    from qa.llm.safetensors_io import SafetensorsCheckpoint

    monkeypatch.setattr(graph, "_ROW_CHUNK", 7)  # splits every tensor at odd offsets
    out = tmp_path / "dyn"
    build_model(tiny_hf, out, int8_kernel="dynamic", check_accuracy=False)
    model = onnx.load(str(out / "model.onnx"))  # external data loaded too
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ckpt = SafetensorsCheckpoint(tiny_hf)
    p = "model.layers.1.mlp"
    w = np.concatenate([ckpt.float32(f"{p}.gate_proj.weight"), ckpt.float32(f"{p}.up_proj.weight")])
    scales = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    q = np.clip(np.rint(w / scales[:, None]), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(inits["l1.gu.weight.q"], q.T)
    np.testing.assert_array_equal(inits["l1.gu.weight.scales"], scales)
