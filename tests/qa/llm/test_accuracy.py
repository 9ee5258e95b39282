"""The build's accuracy check: the numpy reference is Qwen3, healthy builds pass untouched,
planted activation outliers are caught and fixed by a mixed build, or the build fails."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from qa.errors import ConfigError, ModelAccuracyError
from qa.llm.accuracy import THRESHOLDS, AccuracyCheck, AccuracyReport, probe_positions
from qa.llm.build import build_model
from qa.llm.calibration import CHINESE, ENGLISH, calibration_ids
from qa.llm.external_data import external_span
from qa.llm.manifest import ModelManifest
from qa.llm.reference import ReferenceQwen3
from qa.llm.safetensors_io import SafetensorsCheckpoint
from qa.llm.spec import read_qwen3_config
from qa.llm.staged import HEAD_BLOCKS, STAGE_FILE, cut, head_blocks, run_staged, session
from tests.conftest import REPO, SAMPLES
from tests.qa.llm.planted_qwen import make_wide_qwen3, plant_outliers
from tests.qa.llm.test_parity import _has_vnni

OUTLIER_LAYER = 1


def test_calibration_text_is_the_bundled_samples(tiny_hf: Path) -> None:
    assert (SAMPLES / "employee-handbook.md").read_text(encoding="utf-8") == ENGLISH
    assert (SAMPLES / "员工福利指南.md").read_text(encoding="utf-8") == CHINESE
    ids = calibration_ids(tiny_hf)
    assert len(ids) == 512 and calibration_ids(tiny_hf) == ids  # fixed, deterministic
    assert calibration_ids(tiny_hf, 64)[:32] == ids[:32]  # English first, then Chinese
    assert probe_positions(512) == list(range(15, 512, 16))
    assert probe_positions(40) == [15, 31, 39]


def test_calibration_keeps_transformers_and_torch_out_of_the_build_process(
    tiny_hf: Path,
) -> None:
    # loaded once, they never leave a process: 0.34 GB of the build's 1 GB budget
    code = (
        "import sys; from pathlib import Path; from qa.llm.calibration import calibration_ids; "
        f"ids = calibration_ids(Path({str(tiny_hf)!r}), 64); "
        "print(len(ids), sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split("\n")[-2] == "64 []"


def test_an_unreadable_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen3"}')
    with pytest.raises(ConfigError, match="tokenizer does not load"):
        calibration_ids(tmp_path, 16)


def test_reference_forward_equals_transformers(tiny_hf: Path, torch_model: Any) -> None:
    spec, _ = read_qwen3_config(tiny_hf)
    ids = calibration_ids(tiny_hf, 96)
    probes = [0, 17, 63, 95]
    ref = ReferenceQwen3(spec, SafetensorsCheckpoint(tiny_hf)).forward(ids, probes)
    with torch.no_grad():
        out = torch_model(torch.tensor([ids]), output_hidden_states=True)  # type: ignore[operator]
    want = out.logits[0].numpy()[probes]
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(ref.logits, want, atol=1e-4 * max(scale, 1.0), rtol=0)
    # hidden_states[i + 1] is layer i's output (the last one is after the final norm)
    for i in range(spec.num_layers - 1):
        got = ref.layer_states[i]
        np.testing.assert_allclose(got, out.hidden_states[i + 1][0].numpy()[probes], atol=1e-4)


def test_healthy_builds_pass_without_fallback(built_int8: Path, tiny_hf: Path) -> None:
    m = ModelManifest.read(built_int8)  # the shared fixture: blockwise, checked
    assert m.blockwise_layers == () and m.accuracy is not None
    report = AccuracyReport.from_json(m.accuracy)
    assert report.passed and report.tokens == 512 and report.probes == 32
    assert report.min_cosine >= 0.995 and report.top1_near_agreement >= 0.9
    assert m.accuracy["rejected"] == []


def test_healthy_dynamic_build_passes_and_the_figures_are_recorded(
    tiny_hf: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    report = build_model(tiny_hf, tmp_path / "m", int8_kernel="dynamic")
    if not _has_vnni() and report.manifest.blockwise_layers:
        # The known AVX2-only defect of the dynamic kernel (see test_parity): the check is
        # meant to catch it, and it did.
        pytest.xfail(f"dynamic INT8 without VNNI: fell back on {report.manifest.blockwise_layers}")
    m = ModelManifest.read(tmp_path / "m")
    assert m.blockwise_layers == () and report.rejected == ()
    assert m.accuracy is not None and m.accuracy["passed"] is True
    for key in ("min_cosine", "mean_cosine", "top1_agreement", "kl_mean", "kl_max"):
        assert isinstance(m.accuracy[key], float)
    assert m.accuracy["min_cosine"] >= THRESHOLDS.min_cosine
    assert time.monotonic() - started < 60


def test_the_staged_run_gives_the_whole_graph_s_logits(built_int8: Path, tiny_hf: Path) -> None:
    """The check runs the built graph one layer at a time and the lm_head in vocabulary
    blocks (to keep the check's memory near one layer's on the full model); cut at those
    boundaries, it must compute what the whole graph computes."""
    spec, _ = read_qwen3_config(tiny_hf)
    ids = calibration_ids(tiny_hf, 80)
    probes = probe_positions(len(ids))
    staged = run_staged(built_int8, spec, ids, probes)
    whole = session(built_int8 / "model.onnx")
    kv = (1, spec.num_kv_heads, 0, spec.head_dim)
    past = [np.zeros(kv, np.float32) for _ in range(2 * spec.num_layers)]
    start, rows = 0, []
    for end in probes:
        feeds: dict[str, Any] = {
            "input_ids": np.array([ids[start : end + 1]], np.int64),
            "seqlens_k": np.array([end], np.int32),
            "total_sequence_length": np.array(end + 1, np.int32),
            "logits_to_keep": np.array([1], np.int64),
        }
        for i in range(spec.num_layers):
            feeds[f"past_key_values.{i}.key"] = past[2 * i]
            feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
        logits, *past = whole.run(None, feeds)
        rows.append(logits[0, -1])
        start = end + 1
    np.testing.assert_allclose(staged.logits, np.stack(rows), rtol=0, atol=1e-5)
    assert staged.states.shape == (spec.num_layers, len(probes), spec.hidden_size)
    assert not (built_int8 / STAGE_FILE).exists()


def test_head_blocks_partition_the_vocabulary_and_its_weight_bytes(
    built_int8: Path, tiny_hf: Path
) -> None:
    last = read_qwen3_config(tiny_hf)[0].num_layers - 1
    model = onnx.load(str(built_int8 / "model.onnx"), load_external_data=False)
    head = cut(model, [f"l{last}.down", f"l{last}.res_mlp"], ["logits"])
    parts = head_blocks(head, HEAD_BLOCKS)
    assert len(parts) == HEAD_BLOCKS

    def matmul_n(m: onnx.ModelProto) -> int:
        node = next(n for n in m.graph.node if n.op_type == "MatMulNBits")
        return next(a.i for a in node.attribute if a.name == "N")

    def spans(m: onnx.ModelProto, name: str) -> tuple[int, int]:
        _, offset, length = external_span(next(t for t in m.graph.initializer if t.name == name))
        return offset, length

    assert sum(matmul_n(p) for p in parts) == matmul_n(head)
    weights = next(n for n in head.graph.node if n.op_type == "MatMulNBits").input[1]
    offset, length = spans(head, weights)
    for part in parts:  # consecutive row ranges of the one table, nothing copied
        start, size = spans(part, weights)
        assert start == offset
        offset += size
    assert offset == spans(head, weights)[0] + length


def test_no_check_and_fp32_record_no_accuracy(tiny_hf: Path, tmp_path: Path) -> None:
    build_model(tiny_hf, tmp_path / "a", check_accuracy=False)
    assert ModelManifest.read(tmp_path / "a").accuracy is None


def test_old_manifests_still_read(built_int8: Path, tmp_path: Path) -> None:
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(built_int8, old)
    data = json.loads((old / "docqa_model.json").read_text())
    del data["accuracy"], data["blockwise_layers"]
    (old / "docqa_model.json").write_text(json.dumps(data))
    m = ModelManifest.read(old)
    assert m.accuracy is None and m.blockwise_layers == ()


# -- planted activation outliers: a 256-wide, 3-layer model (8 blocks of 32 channels) ------


@pytest.fixture(scope="module")
def wide_hf(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wide_qwen3(tiny_hf, tmp_path_factory.mktemp("wide") / "hf")


def planted(wide_hf: Path, scale: float) -> Path:
    out = wide_hf.parent / f"planted-{scale:g}"
    if not out.exists():
        plant_outliers(wide_hf, out, layer=OUTLIER_LAYER, channels=[3, 17, 29], scale=scale)
    return out


def kernels_by_layer(model_dir: Path) -> dict[int, set[str]]:
    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    found: dict[int, set[str]] = {}
    for node in model.graph.node:
        layer = re.match(r"l(\d+)\.", node.output[0])
        if node.op_type in ("MatMulNBits", "DynamicQuantizeMatMul") and layer:
            found.setdefault(int(layer.group(1)), set()).add(node.op_type)
    return found


def test_planted_outliers_are_caught_and_blamed_on_their_layer(
    wide_hf: Path, tmp_path: Path
) -> None:
    hf = planted(wide_hf, 100)
    spec, _ = read_qwen3_config(hf)
    build_model(hf, tmp_path / "raw", int8_kernel="dynamic", check_accuracy=False)
    result = AccuracyCheck(hf, spec, spec.max_positions).run(tmp_path / "raw")
    assert not result.report.passed
    assert result.report.min_cosine < THRESHOLDS.min_cosine
    assert result.offenders == [OUTLIER_LAYER]
    assert result.layer_errors is not None
    assert result.layer_errors[OUTLIER_LAYER] > 2 * result.layer_errors[OUTLIER_LAYER - 1]
    assert not (tmp_path / "raw" / STAGE_FILE).exists()


def test_planted_outliers_get_a_mixed_build_that_passes(wide_hf: Path, tmp_path: Path) -> None:
    hf = planted(wide_hf, 100)
    report = build_model(hf, tmp_path / "m", int8_kernel="dynamic")
    if not _has_vnni() and report.manifest.blockwise_layers != (OUTLIER_LAYER,):
        pytest.xfail("dynamic INT8 without VNNI damages every layer (see test_parity)")
    m = ModelManifest.read(tmp_path / "m")
    assert m.blockwise_layers == (OUTLIER_LAYER,) and m.int8_kernel == "dynamic"
    assert m.accuracy is not None and m.accuracy["passed"] is True
    # the outlier channels spoil a whole block of 128 activations, not only one of 32
    assert len(report.rejected) == 2 and report.rejected[0].startswith("--kernel dynamic:")
    assert report.rejected[1].startswith("--kernel dynamic with layers 1 blockwise, blocks of 128:")
    assert m.block_size == 32
    assert m.accuracy["rejected"] == list(report.rejected)
    kernels = kernels_by_layer(tmp_path / "m")
    assert kernels[OUTLIER_LAYER] == {"MatMulNBits"}
    assert all(kernels[i] == {"DynamicQuantizeMatMul"} for i in kernels if i != OUTLIER_LAYER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_hopeless_build_tries_every_layer_blockwise_then_fails_and_keeps_the_previous_model(
    wide_hf: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    build_model(wide_hf, out, check_accuracy=False)
    before = (out / "docqa_model.json").read_bytes()
    with pytest.raises(ModelAccuracyError) as err:
        build_model(planted(wide_hf, 1000), out, int8_kernel="dynamic")
    # tried: dynamic, dynamic with the blamed layer blockwise, then every layer blockwise,
    # the blockwise layers in blocks of 128 and then of 32
    message = str(err.value)
    assert "  --kernel dynamic:" in message
    for blocks in (128, 32):
        assert f"  --kernel dynamic with layers 1 blockwise, blocks of {blocks}:" in message
        assert f"  --kernel dynamic with every layer blockwise, blocks of {blocks}:" in message
    assert "build with --precision fp32" in message
    assert (out / "docqa_model.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_blocks_of_128_where_they_divide_every_matmul_else_32(tiny_hf: Path, wide_hf: Path) -> None:
    from qa.llm.build import auto_block_sizes
    from tests.qa.llm.tiny_qwen import real_folder

    assert auto_block_sizes(read_qwen3_config(tiny_hf)[0]) == [32]  # hidden 64
    assert auto_block_sizes(read_qwen3_config(wide_hf)[0]) == [128, 32]
    assert auto_block_sizes(read_qwen3_config(real_folder())[0]) == [128, 32]  # Qwen3-4B


def test_a_healthy_model_keeps_the_coarse_blocks_and_an_explicit_size_is_the_only_one(
    wide_hf: Path, tmp_path: Path
) -> None:
    report = build_model(wide_hf, tmp_path / "auto")
    assert report.manifest.block_size == 128 and report.rejected == ()
    assert kernels_by_layer(tmp_path / "auto")[0] == {"MatMulNBits"}
    fine = build_model(wide_hf, tmp_path / "fine", block_size=32)
    assert fine.manifest.block_size == 32 and fine.rejected == ()
    with pytest.raises(ModelAccuracyError) as err:
        build_model(planted(wide_hf, 1000), tmp_path / "m", block_size=64)
    assert "blocks of" not in str(err.value)  # one size: nothing to fall back to


def test_a_stage_s_session_is_freed_as_the_stage_ends_without_a_gc_pass(
    built_int8: Path,
) -> None:
    """Two stages' weights must never be resident together; reference counting alone
    frees each session (a full gc pass per stage cost seconds a check)."""
    import gc
    import weakref

    from qa.llm.staged import _in_stage

    model = onnx.load(str(built_int8 / "model.onnx"), load_external_data=False)
    refs: list[weakref.ref[Any]] = []
    gc.disable()
    try:
        _in_stage(built_int8, cut(model, [], ["embeds"]), lambda s: refs.append(weakref.ref(s)))
        assert refs[0]() is None
    finally:
        gc.enable()
    assert not (built_int8 / STAGE_FILE).exists()
