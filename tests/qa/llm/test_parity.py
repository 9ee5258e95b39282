"""The built graph computes what PyTorch's Qwen3ForCausalLM computes.

These drive the ONNX file through its documented I/O contract with plain (unshared) past
tensors, independently of the generator's buffer tricks, so they test the artifact itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import torch

from qa.llm.generate import OnnxQwenGenerator
from qa.llm.manifest import ModelManifest

PROMPT = np.random.default_rng(0).integers(3, 500, 24).tolist()


class Runner:
    def __init__(self, model_dir: Path) -> None:
        self.spec = ModelManifest.read(model_dir).spec
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        s = self.spec
        shape = (1, s.num_kv_heads, 0, s.head_dim)
        self.past = [np.zeros(shape, np.float32) for _ in range(2 * s.num_layers)]
        self.length = 0

    def __call__(self, tokens: list[int]) -> npt.NDArray[np.float32]:
        total = self.length + len(tokens)
        feeds: dict[str, Any] = {
            "input_ids": np.array([tokens], np.int64),
            "seqlens_k": np.array([total - 1], np.int32),
            "total_sequence_length": np.array(total, np.int32),
            "logits_to_keep": np.array([1], np.int64),
        }
        for i in range(self.spec.num_layers):
            feeds[f"past_key_values.{i}.key"] = self.past[2 * i]
            feeds[f"past_key_values.{i}.value"] = self.past[2 * i + 1]
        logits, *self.past = self.session.run(None, feeds)
        self.length = total
        assert logits.shape == (1, 1, self.spec.vocab_size)  # last position only
        return np.asarray(logits[0, 0])


def torch_forward(model: Any, tokens: list[int]) -> tuple[npt.NDArray[np.float32], Any]:
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=True)
    return out.logits[0].numpy(), out.past_key_values


def test_fp32_logits_match_pytorch_prefill_decode_and_chunk(
    built_fp32: Path, torch_model: Any
) -> None:
    ref, past = torch_forward(torch_model, PROMPT)
    run = Runner(built_fp32)
    got = [run(PROMPT[:12])]  # prefill
    want = [ref[11]]
    for t in range(12, 16):  # single-token decode steps with past KV
        got.append(run(PROMPT[t : t + 1]))
        want.append(ref[t])
    got.append(run(PROMPT[16:]))  # a multi-token chunk on top of a past (KV reuse path)
    want.append(ref[-1])
    scale = float(np.abs(ref).max())
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4 * max(scale, 1.0), rtol=0)
    # the cache itself: post-rotary keys and values for every position, every layer
    for i in range(run.spec.num_layers):
        np.testing.assert_allclose(run.past[2 * i], past.layers[i].keys.numpy(), atol=1e-4)
        np.testing.assert_allclose(run.past[2 * i + 1], past.layers[i].values.numpy(), atol=1e-4)


@pytest.mark.parametrize("kernel", ["blockwise", "dynamic"])
def test_int8_stays_close_to_pytorch(
    kernel: str, built_int8: Path, built_int8_dynamic: Path, torch_model: Any
) -> None:
    ref, _ = torch_forward(torch_model, PROMPT)
    run = Runner(built_int8 if kernel == "blockwise" else built_int8_dynamic)
    got = [run(PROMPT[:4])]
    got += [run([t]) for t in PROMPT[4:]]  # teacher-forced decode over the rest
    want = ref[3:]
    cos = [
        float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w)))
        for g, w in zip(got, want, strict=True)
    ]
    agree = np.mean([int(np.argmax(g) == np.argmax(w)) for g, w in zip(got, want, strict=True)])
    if kernel == "dynamic" and not _has_vnni():
        # A known defect, kept visible: the dynamic kernel (u8 activations x s8 weights)
        # is exact only with VNNI; on AVX2-only CPUs the int8 dot products are summed in
        # pairs into int16, which saturates. Measured on an AMD EPYC Zen 1: worst cosine
        # 0.94 and 52% argmax agreement (0.99+ and >= 80% on avx512_vnni). The fix (7-bit
        # weights, or blockwise by default on such CPUs) is still to do; see the README.
        pytest.xfail(f"dynamic INT8 without VNNI: worst cosine {min(cos):.3f}, agree {agree}")
    assert min(cos) > 0.99, cos
    assert agree >= 0.8, agree


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # unknown: hold to the strict bound
    return "avx512_vnni" in flags or "avx_vnni" in flags


def graph_ops(model_dir: Path) -> set[str]:
    import onnx

    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    return {n.op_type for n in model.graph.node}


def test_int8_is_not_just_fp32(
    built_int8: Path, built_int8_dynamic: Path, built_fp32: Path
) -> None:
    """The INT8 artifacts really are quantized: smaller, and integer kernels in the graph."""
    fp32 = (built_fp32 / "model.onnx.data").stat().st_size
    int8 = (built_int8 / "model.onnx.data").stat().st_size
    assert int8 < 0.5 * fp32
    ops = graph_ops(built_int8)
    assert {"MatMulNBits", "GatherBlockQuantized", "GroupQueryAttention"} <= ops
    assert "FusedMatMul" not in ops and "DynamicQuantizeMatMul" not in ops
    dyn = graph_ops(built_int8_dynamic)
    assert {"DynamicQuantizeMatMul", "MatMulNBits", "GatherBlockQuantized"} <= dyn
    assert "FusedMatMul" not in dyn
    assert ModelManifest.read(built_int8_dynamic).int8_kernel == "dynamic"


def torch_greedy(model: Any, prompt: list[int], n: int, vocab_limit: int) -> list[int]:
    tokens = list(prompt)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([tokens])).logits[0, -1, :vocab_limit]
            out.append(int(logits.argmax()))
            tokens.append(out[-1])
    return out


@pytest.mark.parametrize("prompt_kind", ["ids", "messages"])
def test_fp32_greedy_tokens_equal_pytorch(
    gen_fp32: OnnxQwenGenerator, torch_model: Any, prompt_kind: str
) -> None:
    prompt: Any = (
        PROMPT
        if prompt_kind == "ids"
        else [{"role": "user", "content": "What is the deadline for expense reports?"}]
    )
    ids = gen_fp32.encode(prompt)
    saved, gen_fp32.stop_ids = gen_fp32.stop_ids, frozenset()  # raw greedy tokens, whatever
    try:
        events = list(gen_fp32.stream(prompt, max_new_tokens=12, temperature=0))
    finally:
        gen_fp32.stop_ids = saved
    got = [t for e in events for t in e.token_ids]
    text = "".join(e.text for e in events)
    want = torch_greedy(torch_model, ids, 12, gen_fp32.vocab_limit)
    assert got == want
    assert text == gen_fp32.tokenizer.decode(want, skip_special_tokens=True)
