"""The int8 KV cache (``docqa model build --kv-cache int8``) against the float32 one.

Two builds of the same tiny Qwen3 (real tokenizer) differ only in the cache: same INT8
weights, same kernel. Long prompts of real text (the bundled samples, repeated) are
prefilled through the production generator, and the last position's logits compared.
CI runs 8K tokens; ``make eval`` adds the 32K window (about a minute more).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest

from qa.errors import InvalidInput, ModelNotBuilt
from qa.llm.accuracy import compare_logits
from qa.llm.build import build_model
from qa.llm.generate import Logits, OnnxQwenGenerator
from qa.llm.kv_quant import KV_MARGIN, key_bounds, scales, value_bounds
from qa.llm.manifest import MANIFEST, ModelManifest
from tests.conftest import SAMPLES
from tests.qa.llm.tiny_qwen import make_tiny_qwen3

CONTEXT = 33_024  # the 32K window plus room for a few answer tokens


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen3(tmp_path_factory.mktemp("kv-hf") / "hf", max_positions=40_960)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, hf: Path) -> dict[str, OnnxQwenGenerator]:
    root = tmp_path_factory.mktemp("kv")
    gens = {}
    for kind in ("fp32", "int8"):
        build_model(hf, root / kind, context_length=CONTEXT, kv_cache=kind)  # type: ignore[arg-type]
        gens[kind] = OnnxQwenGenerator(root / kind, threads=2)
    return gens


def _text_ids(gen: OnnxQwenGenerator, n: int) -> list[int]:
    """``n`` tokens of the English and Chinese samples, repeated."""
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(SAMPLES.glob("*.md")))
    ids = [int(i) for i in gen.tokenizer.encode(text, add_special_tokens=False)]
    return (ids * (n // len(ids) + 1))[:n]


def _last_logits(gen: OnnxQwenGenerator, ids: Sequence[int]) -> np.ndarray:  # type: ignore[type-arg]
    # the steps stream() takes for a prompt: one buffer, prefill in prefill_chunk pieces
    kv, keys, values = gen._new_buffers(len(ids))
    logits = Logits(gen._ort, gen.spec.vocab_size, 1)
    for start in range(0, len(ids), gen.prefill_chunk):
        gen._step(ids[start : start + gen.prefill_chunk], kv, keys, values, logits)
    return logits.row(0).copy()


def test_the_int8_build_stores_an_int8_cache(builds: dict[str, OnnxQwenGenerator]) -> None:
    int8, fp32 = builds["int8"].manifest, builds["fp32"].manifest
    assert (int8.kv_cache, fp32.kv_cache) == ("int8", "fp32")
    assert fp32.kv_bytes_per_token == 4 * int8.kv_bytes_per_token
    s = int8.spec
    assert int8.kv_bytes_per_token == s.num_layers * s.num_kv_heads * s.head_dim * 2
    assert int8.key != fp32.key  # a cached float32 prefix is never loaded into int8 buffers
    graph = onnx.load(str(builds["int8"].model_dir / "model.onnx"), load_external_data=False)
    kinds = {i.name: i.type.tensor_type.elem_type for i in graph.graph.input}
    assert kinds["past_key_values.0.key"] == onnx.TensorProto.INT8
    kv, _, _ = builds["int8"]._new_buffers(300)
    assert kv.keys[0].dtype == np.int8 and kv.capacity == 512
    assert int8.accuracy is not None and int8.accuracy["passed"]  # the check ran on it


def test_key_bounds_hold_at_every_rotary_position() -> None:
    """A key channel's bound is its rotary pair's length: no position can exceed it."""
    from qa.llm.reference import apply_rotary

    rng = np.random.default_rng(0)
    k = rng.standard_normal((2, 40, 16)).astype(np.float32)
    k[:, :, 3] *= 30  # an outlier channel: its pair partner (11) gets the same bound
    bound = key_bounds(k)
    assert bound[0, 3] == bound[0, 11] and bound[0, 3] > 20
    for pos in (0, 7, 1000, 32_000):
        angles = pos / 10000 ** (np.arange(8) / 8)
        rotated = apply_rotary(
            k, np.cos(angles)[None].astype(np.float32), np.sin(angles)[None].astype(np.float32)
        )
        assert (np.abs(rotated).max(axis=1) <= bound + 1e-4).all()
    assert (value_bounds(k) == np.abs(k).max(axis=1)).all()
    steps = scales(bound)
    assert np.allclose(steps * 127, np.maximum(bound, 1e-3) * KV_MARGIN)
    assert (scales(np.zeros(3, np.float32)) > 0).all()  # a silent channel still has a step


@pytest.mark.parametrize(
    "tokens", [8192, pytest.param(32_768, marks=pytest.mark.eval)], ids=["8K", "32K"]
)
def test_int8_cache_logits_follow_the_float32_cache(
    builds: dict[str, OnnxQwenGenerator], tokens: int
) -> None:
    ids = _text_ids(builds["fp32"], tokens)
    m = compare_logits(
        _last_logits(builds["fp32"], ids)[None], _last_logits(builds["int8"], ids)[None]
    )
    print(f"\n{tokens} tokens: cosine {m.cosines[0]:.5f}, KL {m.kl[0]:.5f}, top1 {m.top1[0]}")
    assert m.cosines[0] >= 0.99 and m.kl[0] <= 0.02


def test_greedy_answers_agree_through_the_generator(
    builds: dict[str, OnnxQwenGenerator],
) -> None:
    ids = _text_ids(builds["fp32"], 4000)
    out: dict[str, list[int]] = {}
    for kind, gen in builds.items():
        events = list(gen.stream(ids, max_new_tokens=24, temperature=0.0))
        stats = events[-1].stats
        assert stats is not None and stats.prompt_tokens == len(ids)
        out[kind] = [t for e in events for t in e.token_ids]
    same = sum(a == b for a, b in zip(out["fp32"], out["int8"], strict=False))
    print(f"\ngreedy agreement: {same}/{len(out['fp32'])}")
    assert out["int8"][:8] == out["fp32"][:8]


def test_the_cli_builds_and_describes_an_int8_cache(hf: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main as docqa

    base = ["--data-dir", str(tmp_path / "var"), "model"]
    # --no-check skips the comparison, not the reference run the scales come from
    args = ["build", "--from", str(hf), "--context", "1024", "--no-check", "--kv-cache", "int8"]
    run = CliRunner().invoke(docqa, [*base, *args])
    assert run.exit_code == 0, run.output
    assert "int8 KV cache" in run.output
    manifest = ModelManifest.read(tmp_path / "var" / "model")
    assert manifest.kv_cache == "int8" and manifest.accuracy is None
    info = CliRunner(env={"COLUMNS": "200"}).invoke(docqa, [*base, "info"])
    assert info.exit_code == 0, info.output
    per_token = manifest.kv_bytes_per_token
    assert f"int8: {per_token:,} bytes per token" in info.output
    bad = CliRunner().invoke(docqa, [*base, *args[:-1], "fp16"])
    assert bad.exit_code == 2 and "fp16" in bad.output


def test_bad_kv_cache_choices(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="kv_cache must be one of fp32, int8"):
        build_model(tmp_path, tmp_path / "out", kv_cache="fp16")  # type: ignore[arg-type]


def test_a_manifest_with_an_unknown_cache_type_is_refused(
    builds: dict[str, OnnxQwenGenerator], tmp_path: Path
) -> None:
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(builds["int8"].model_dir, folder)
    data = json.loads((folder / MANIFEST).read_text())
    data["kv_cache"] = "int4"
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ModelNotBuilt, match="kv_cache must be one of"):
        ModelManifest.read(folder)
    del data["kv_cache"]  # written before the option existed: a float32 cache
    (folder / MANIFEST).write_text(json.dumps(data))
    assert ModelManifest.read(folder).kv_cache == "fp32"
