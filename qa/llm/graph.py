"""Emit the Qwen3 decoder as an ONNX graph of onnxruntime CPU contrib ops, tensor by tensor.

Per layer (``x`` is the residual stream, ``h`` its RMS-normed copy)::

    h          = SkipSimplifiedLayerNorm(prev_out, x)          # also returns x + prev_out
    q | k | v  = Split(MatMulNBits(h, Wqkv))                   # one fused projection
    q, k       = SimplifiedLayerNorm over head_dim             # Qwen3 q_norm / k_norm
    a, K', V'  = GroupQueryAttention(q, k, v, past K/V, do_rotary=1)
    o          = MatMulNBits(a, Wo)
    h          = SkipSimplifiedLayerNorm(o, x)
    g | u      = Split(MatMulNBits(h, Wgate_up))               # one fused projection
    out        = MatMulNBits(g * sigmoid(g) * u, Wdown)

and at the end only the LAST position (or the last ``logits_to_keep``) goes through
lm_head, so a 2,048-token prefill never materialises 2,048 x 151,936 logits. With
``int8_kernel="dynamic"`` the layer matmuls are ``DynamicQuantizeMatMul`` instead (see
``Int8Kernel``). With ``precision="fp32"`` the same graph uses ``FusedMatMul(transB=1)``
on float32 weights (the parity reference).

Graph inputs: ``input_ids`` [1, S] int64, ``seqlens_k`` [1] int32 (= total length - 1),
``total_sequence_length`` [] int32, ``past_key_values.{i}.key|value`` [1, kv_heads, C, D]
float32 (int8 when built with ``kv_scales``: GroupQueryAttention quantizes what it
appends with those fixed per-channel steps, see ``kv_quant``), ``logits_to_keep`` [1]
int64 (how many last positions get logits; models built before it existed lack it and
always give one). Outputs: ``logits`` [1, logits_to_keep, vocab],
``present.{i}.key|value``. When the runner
binds ``present`` to the very buffer it passes as ``past`` (capacity ``C`` >= total
length), GroupQueryAttention appends in place and no KV is ever copied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
from onnx import ModelProto, NodeProto, TensorProto, helper

from qa.errors import ModelBuildError
from qa.llm.external_data import ExternalDataWriter, external_span
from qa.llm.manifest import LOGITS_TO_KEEP
from qa.llm.quant import k_blocks, quantize_channels, quantize_rows
from qa.llm.safetensors_io import SafetensorsCheckpoint
from qa.llm.spec import Qwen3Spec

Precision = Literal["int8", "fp32"]
# How INT8 layer weights are multiplied (lm_head and the embedding always use "blockwise"):
#   "blockwise": MatMulNBits, blocks of ``block_size`` along K, activations quantized per
#       block too (accuracy_level 4). Most accurate; fastest per decoded token.
#   "dynamic": DynamicQuantizeMatMul, per-output-channel int8 weights, activations
#       quantized per tensor at run time; MLAS's u8s8 VNNI GEMM makes prefill ~2.5x faster.
Int8Kernel = Literal["blockwise", "dynamic"]
MS = "com.microsoft"
OPSET = 21
#: rows converted and quantized per step (2,048 x 2,560 float32 = 21 MB): the quantizers'
#: temporaries are a few times the chunk, and the build must stay well under 1 GB
_ROW_CHUNK = 2048


class Qwen3GraphBuilder:
    def __init__(
        self,
        spec: Qwen3Spec,
        ckpt: SafetensorsCheckpoint,
        writer: ExternalDataWriter,
        *,
        precision: Precision,
        block_size: int,
        accuracy_level: int,
        context_length: int,
        int8_kernel: Int8Kernel = "blockwise",
        blockwise_layers: frozenset[int] = frozenset(),
        kv_scales: npt.NDArray[np.float32] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.ckpt = ckpt
        self.w = writer
        self.precision = precision
        self.block_size = block_size
        self.accuracy_level = accuracy_level
        self.context_length = context_length
        self.int8_kernel = int8_kernel
        # A mixed build: these layers use "blockwise" whatever ``int8_kernel`` says (the
        # accuracy check's fallback for layers whose activations defeat "dynamic").
        self.blockwise_layers = blockwise_layers
        self._kernel: Int8Kernel = int8_kernel  # the kernel of the layer being emitted
        # An int8 KV cache: (layers, 2, kv_heads, head_dim) key / value steps (kv_quant);
        # None: a float32 cache
        if kv_scales is not None and kv_scales.shape != (
            spec.num_layers,
            2,
            spec.num_kv_heads,
            spec.head_dim,
        ):
            raise ModelBuildError(f"KV scales of shape {kv_scales.shape} do not fit the model")
        self.kv_scales = kv_scales
        self.progress = progress
        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []

    # ---- helpers -------------------------------------------------------------------------

    def _node(
        self, op: str, inputs: list[str], outputs: list[str], *, domain: str = "", **attrs: object
    ) -> None:
        node = helper.make_node(op, inputs, outputs, name=f"{op}_{len(self.nodes)}", domain=domain)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in sorted(attrs.items()))
        self.nodes.append(node)

    def _const(self, name: str, array: npt.NDArray[np.generic]) -> str:
        self.inits.append(self.w.tensor(name, array))
        return name

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        got = self.ckpt.shape(name)
        if got != shape:
            raise ModelBuildError(
                f"tensor {name!r} has shape {got}, expected {shape} from config.json"
            )

    def _norm_weight(self, name: str, size: int) -> str:
        self._check_shape(name, (size,))
        return self._const(name, self.ckpt.float32(name))

    def _linear(self, x: str, tensors: list[tuple[str, int]], k: int, out: str) -> None:
        """``out = x @ concat(W_i).T`` for checkpoint tensors ``W_i`` of shape (n_i, k).

        The fused weight is written by appending each source's rows, so q/k/v (or gate/up)
        never exist together in memory.
        """
        n = sum(n_i for _, n_i in tensors)
        for name, n_i in tensors:
            self._check_shape(name, (n_i, k))
        wname = f"{out}.weight"
        if self.precision == "fp32":
            offset = self.w.begin()
            for name, n_i in tensors:
                for start in range(0, n_i, _ROW_CHUNK):
                    self.w.append(self.ckpt.float32_rows(name, start, start + _ROW_CHUNK))
            self.inits.append(self.w.proto(wname, TensorProto.FLOAT, (n, k), offset, n * k * 4))
            self._node("FusedMatMul", [x, wname], [out], domain=MS, transB=1)
            return
        if self._kernel == "dynamic":
            self._dynamic_linear(x, wname, tensors, k, out)
            return
        bq, scales = self._write_quantized(wname, tensors, k)
        self._matmul_nbits(x, bq, scales, n, k, out)

    def _dynamic_linear(
        self, x: str, wname: str, tensors: list[tuple[str, int]], k: int, out: str
    ) -> None:
        """Per-output-channel symmetric int8, stored (K, N) as DynamicQuantizeMatMul wants.

        Rows are quantized ``_ROW_CHUNK`` at a time straight into the transposed table, so
        the fused matrix (gate+up: 19,456 x 2,560 on Qwen3-4B) never exists in float32: its
        temporaries were the build's peak (0.6 GB over its baseline).
        """
        n = sum(n_i for _, n_i in tensors)
        qt = np.empty((k, n), np.int8)
        scales = np.empty(n, np.float32)
        col = 0
        for name, n_i in tensors:
            for start in range(0, n_i, _ROW_CHUNK):
                rows = self.ckpt.float32_rows(name, start, start + _ROW_CHUNK)
                q, s = quantize_channels(rows)
                qt[:, col : col + len(q)] = q.T
                scales[col : col + len(q)] = s
                col += len(q)
        bq = self._const(f"{wname}.q", qt)
        del qt
        sc = self._const(f"{wname}.scales", scales)
        self._node("DynamicQuantizeMatMul", [x, bq, sc], [out], domain=MS)

    def _write_quantized(
        self, wname: str, tensors: list[tuple[str, int]], k: int
    ) -> tuple[str, str]:
        nb = k_blocks(k, self.block_size)
        n = sum(n_i for _, n_i in tensors)
        offset = self.w.begin()
        all_scales: list[npt.NDArray[np.float32]] = []
        for name, n_i in tensors:
            for start in range(0, n_i, _ROW_CHUNK):
                rows = self.ckpt.float32_rows(name, start, start + _ROW_CHUNK)
                packed, scales = quantize_rows(rows, self.block_size)
                del rows
                self.w.append(packed)
                all_scales.append(scales)
        length = n * nb * self.block_size
        self.inits.append(
            self.w.proto(f"{wname}.q", TensorProto.UINT8, (n, nb, self.block_size), offset, length)
        )
        self._const(f"{wname}.scales", np.concatenate(all_scales, axis=0))
        return f"{wname}.q", f"{wname}.scales"

    def _matmul_nbits(self, x: str, bq: str, scales: str, n: int, k: int, out: str) -> None:
        self._node(
            "MatMulNBits",
            [x, bq, scales],
            [out],
            domain=MS,
            K=k,
            N=n,
            bits=8,
            block_size=self.block_size,
            accuracy_level=self.accuracy_level,
        )

    def _head_norm(self, x: str, weight: str, heads: int, out: str) -> None:
        """Qwen3's q_norm / k_norm: RMSNorm over each head's ``head_dim`` values."""
        d = self.spec.head_dim
        split = self._const(f"{out}.shape4", np.array([0, 0, heads, d], np.int64))
        merge = self._const(f"{out}.shape3", np.array([0, 0, heads * d], np.int64))
        self._node("Reshape", [x, split], [f"{out}.4d"])
        self._node(
            "SimplifiedLayerNormalization",
            [f"{out}.4d", weight],
            [f"{out}.n4d"],
            axis=-1,
            epsilon=self.spec.rms_norm_eps,
        )
        self._node("Reshape", [f"{out}.n4d", merge], [out])

    def _rotary_caches(self) -> tuple[str, str]:
        # Computed in float32 the way transformers' Qwen3RotaryEmbedding does, so fp32 parity
        # holds at long positions too.
        d = self.spec.head_dim
        inv_freq = (
            1.0
            / (self.spec.rope_theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d))
        ).astype(np.float32)
        pos = np.arange(self.context_length, dtype=np.float32)
        freqs = np.outer(pos, inv_freq).astype(np.float32)
        return (
            self._const("rotary.cos", np.cos(freqs).astype(np.float32)),
            self._const("rotary.sin", np.sin(freqs).astype(np.float32)),
        )

    # ---- the model -----------------------------------------------------------------------

    def build(self) -> ModelProto:
        s = self.spec
        steps = s.num_layers + 2
        self._report(0, steps, "embeddings")
        embed_name = "model.embed_tokens.weight"
        self._check_shape(embed_name, (s.vocab_size, s.hidden_size))
        lm_head = self._embedding(embed_name)
        cos, sin = self._rotary_caches()
        seqlens, total = "seqlens_k", "total_sequence_length"

        prev_out = "embeds"
        residual = ""
        for i in range(s.num_layers):
            self._report(i + 1, steps, f"layer {i + 1}/{s.num_layers}")
            self._kernel = "blockwise" if i in self.blockwise_layers else self.int8_kernel
            p = f"model.layers.{i}"
            ln1 = self._norm_weight(f"{p}.input_layernorm.weight", s.hidden_size)
            h = f"l{i}.h_attn"
            if i == 0:
                self._node(
                    "SimplifiedLayerNormalization",
                    [prev_out, ln1],
                    [h],
                    axis=-1,
                    epsilon=s.rms_norm_eps,
                )
                residual = prev_out
            else:
                new_res = f"l{i}.res_attn"
                self._node(
                    "SkipSimplifiedLayerNormalization",
                    [prev_out, residual, ln1],
                    [h, "", "", new_res],
                    domain=MS,
                    epsilon=s.rms_norm_eps,
                )
                residual = new_res
            a = f"{p}.self_attn"
            self._linear(
                h,
                [
                    (f"{a}.q_proj.weight", s.q_size),
                    (f"{a}.k_proj.weight", s.kv_size),
                    (f"{a}.v_proj.weight", s.kv_size),
                ],
                s.hidden_size,
                f"l{i}.qkv",
            )
            sizes = self._const(
                f"l{i}.qkv_sizes", np.array([s.q_size, s.kv_size, s.kv_size], np.int64)
            )
            self._node("Split", [f"l{i}.qkv", sizes], [f"l{i}.q", f"l{i}.k", f"l{i}.v"], axis=-1)
            qn = self._norm_weight(f"{a}.q_norm.weight", s.head_dim)
            kn = self._norm_weight(f"{a}.k_norm.weight", s.head_dim)
            self._head_norm(f"l{i}.q", qn, s.num_heads, f"l{i}.qn")
            self._head_norm(f"l{i}.k", kn, s.num_kv_heads, f"l{i}.kn")
            gqa_in = [
                f"l{i}.qn",
                f"l{i}.kn",
                f"l{i}.v",
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                seqlens,
                total,
                cos,
                sin,
            ]
            quant: dict[str, object] = {}
            if self.kv_scales is not None:
                # inputs 9-11 (position ids, attention bias, head sink) stay absent
                shape = (1, s.num_kv_heads, 1, s.head_dim)
                gqa_in += ["", "", ""] + [
                    self._const(f"l{i}.{kind}_scale", self.kv_scales[i, j].reshape(shape))
                    for j, kind in enumerate(("k", "v"))
                ]
                quant = {
                    "k_quant_type": "PER_CHANNEL",
                    "v_quant_type": "PER_CHANNEL",
                    "kv_cache_bit_width": 8,
                }
            self._node(
                "GroupQueryAttention",
                gqa_in,
                [f"l{i}.attn", f"present.{i}.key", f"present.{i}.value"],
                domain=MS,
                num_heads=s.num_heads,
                kv_num_heads=s.num_kv_heads,
                do_rotary=1,
                rotary_interleaved=0,
                scale=float(s.head_dim**-0.5),
                **quant,
            )
            self._linear(f"l{i}.attn", [(f"{a}.o_proj.weight", s.hidden_size)], s.q_size, f"l{i}.o")
            ln2 = self._norm_weight(f"{p}.post_attention_layernorm.weight", s.hidden_size)
            h2, res2 = f"l{i}.h_mlp", f"l{i}.res_mlp"
            self._node(
                "SkipSimplifiedLayerNormalization",
                [f"l{i}.o", residual, ln2],
                [h2, "", "", res2],
                domain=MS,
                epsilon=s.rms_norm_eps,
            )
            residual = res2
            m = f"{p}.mlp"
            self._linear(
                h2,
                [
                    (f"{m}.gate_proj.weight", s.intermediate_size),
                    (f"{m}.up_proj.weight", s.intermediate_size),
                ],
                s.hidden_size,
                f"l{i}.gu",
            )
            gu_sizes = self._const(
                f"l{i}.gu_sizes", np.array([s.intermediate_size, s.intermediate_size], np.int64)
            )
            self._node("Split", [f"l{i}.gu", gu_sizes], [f"l{i}.g", f"l{i}.u"], axis=-1)
            self._node("Sigmoid", [f"l{i}.g"], [f"l{i}.gs"])
            self._node("Mul", [f"l{i}.g", f"l{i}.gs"], [f"l{i}.silu"])
            self._node("Mul", [f"l{i}.silu", f"l{i}.u"], [f"l{i}.act"])
            self._linear(
                f"l{i}.act",
                [(f"{m}.down_proj.weight", s.hidden_size)],
                s.intermediate_size,
                f"l{i}.down",
            )
            prev_out = f"l{i}.down"

        self._report(steps - 1, steps, "lm_head")
        self._kernel = self.int8_kernel
        # Only the last positions need logits: slice BEFORE the norm and lm_head. How many is
        # the input ``logits_to_keep``: prefill and decoding want one, verifying a
        # speculative draft of k tokens wants k + 1.
        self._node("Neg", [LOGITS_TO_KEEP], ["last.starts"])
        end = self._const("last.ends", np.array([np.iinfo(np.int64).max], np.int64))
        axis = self._const("last.axes", np.array([1], np.int64))
        self._node("Slice", [prev_out, "last.starts", end, axis], ["last.out"])
        self._node("Slice", [residual, "last.starts", end, axis], ["last.res"])
        fn = self._norm_weight("model.norm.weight", s.hidden_size)
        self._node(
            "SkipSimplifiedLayerNormalization",
            ["last.out", "last.res", fn],
            ["last.h"],
            domain=MS,
            epsilon=s.rms_norm_eps,
        )
        lm_head("last.h", "logits")
        self._report(steps, steps, "done")
        return self._model()

    def _embedding(self, embed_name: str) -> Callable[[str, str], None]:
        """Emit the token embedding; return an emitter for lm_head (tied or not)."""
        s = self.spec
        tied = s.tie_word_embeddings or "lm_head.weight" not in self.ckpt
        if self.precision == "fp32":
            offset = self.w.begin()
            for start in range(0, s.vocab_size, _ROW_CHUNK):
                self.w.append(self.ckpt.float32_rows(embed_name, start, start + _ROW_CHUNK))
            nbytes = s.vocab_size * s.hidden_size * 4
            table = "embed.weight"
            self.inits.append(
                self.w.proto(
                    table, TensorProto.FLOAT, (s.vocab_size, s.hidden_size), offset, nbytes
                )
            )
            self._node("Gather", [table, "input_ids"], ["embeds"])

            def fp32_head(x: str, out: str) -> None:
                if tied:
                    self._node("FusedMatMul", [x, table], [out], domain=MS, transB=1)
                else:
                    self._linear(x, [("lm_head.weight", s.vocab_size)], s.hidden_size, out)

            return fp32_head

        # INT8: the (V, K/bs, bs) MatMulNBits blob is the (V, K) uint8 table that
        # GatherBlockQuantized reads; point a second TensorProto at the same bytes.
        bq, scales = self._write_quantized("embed", [(embed_name, s.vocab_size)], s.hidden_size)
        nb = k_blocks(s.hidden_size, self.block_size)
        src = self.inits[-2]
        offset = external_span(src)[1]
        table = "embed.table"
        self.inits.append(
            self.w.proto(
                table,
                TensorProto.UINT8,
                (s.vocab_size, nb * self.block_size),
                offset,
                s.vocab_size * nb * self.block_size,
            )
        )
        self._node(
            "GatherBlockQuantized",
            [table, "input_ids", scales],
            ["embeds.padded"],
            domain=MS,
            bits=8,
            block_size=self.block_size,
            gather_axis=0,
            quantize_axis=1,
        )
        if nb * self.block_size != s.hidden_size:
            starts = self._const("embed.pad_starts", np.array([0], np.int64))
            ends = self._const("embed.pad_ends", np.array([s.hidden_size], np.int64))
            axes = self._const("embed.pad_axes", np.array([-1], np.int64))
            self._node("Slice", ["embeds.padded", starts, ends, axes], ["embeds"])
        else:
            self._node("Identity", ["embeds.padded"], ["embeds"])

        def int8_head(x: str, out: str) -> None:
            if tied:
                self._matmul_nbits(x, bq, scales, s.vocab_size, s.hidden_size, out)
            else:
                self._linear(x, [("lm_head.weight", s.vocab_size)], s.hidden_size, out)

        return int8_head

    def _report(self, step: int, total: int, label: str) -> None:
        if self.progress is not None:
            self.progress(step, total, label)

    def _model(self) -> ModelProto:
        s = self.spec
        f32, i64, i32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
        inputs = [
            helper.make_tensor_value_info("input_ids", i64, ["batch", "sequence"]),
            helper.make_tensor_value_info("seqlens_k", i32, ["batch"]),
            helper.make_tensor_value_info("total_sequence_length", i32, []),
        ]
        inputs.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, i64, [1]))
        outputs = [helper.make_tensor_value_info("logits", f32, ["batch", "keep", s.vocab_size])]
        kv = f32 if self.kv_scales is None else TensorProto.INT8
        for i in range(s.num_layers):
            for kind in ("key", "value"):
                inputs.append(
                    helper.make_tensor_value_info(
                        f"past_key_values.{i}.{kind}",
                        kv,
                        ["batch", s.num_kv_heads, "past_sequence", s.head_dim],
                    )
                )
                outputs.append(
                    helper.make_tensor_value_info(
                        f"present.{i}.{kind}",
                        kv,
                        ["batch", s.num_kv_heads, "present_sequence", s.head_dim],
                    )
                )
        graph = helper.make_graph(self.nodes, "qwen3", inputs, outputs, initializer=self.inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
            producer_name="docqa",
        )
        model.ir_version = 10
        return model
