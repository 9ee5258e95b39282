"""A float32 Qwen3 forward pass in numpy, streamed layer by layer from the safetensors.

The accuracy check of ``docqa model build`` compares the INT8 graph against this. It reads
one weight matrix at a time through ``SafetensorsCheckpoint`` (memory-mapped, widened to
float32 on read) and drops it before the next, so the whole 4B model is never resident:
peak memory is one matrix (gate or up: 9,728 x 2,560 float32, 100 MB) plus the activations
of one sequence (512 x 9,728 float32, 20 MB). lm_head runs only at the probe positions
and in row blocks, so 151,936 x 2,560 float32 (1.5 GB) never exists either.

It computes what transformers' ``Qwen3ForCausalLM`` computes (``tests/qa/llm/test_reference.py``
holds it to that): RMSNorm in float32, q/k norm per head, rotary (``rotate_half``) with
``rope_theta``, grouped-query causal attention, SwiGLU MLP, tied or untied lm_head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.errors import InvalidInput
from qa.llm.kv_quant import key_bounds, value_bounds
from qa.llm.safetensors_io import SafetensorsCheckpoint
from qa.llm.spec import Qwen3Spec

F32 = npt.NDArray[np.float32]
_HEAD_ROWS = 8192  # lm_head rows per block: 8,192 x 2,560 float32 = 84 MB


@dataclass(frozen=True)
class ReferenceOutput:
    logits: F32  # (P, vocab) at the probe positions
    layer_states: F32  # (layers, P, hidden): the residual stream after each layer
    #: (layers, 2, kv_heads, head_dim): per channel, the largest key (as a rotary pair) and
    #: value the sequence produced; an int8 KV cache's scales come from it (kv_quant)
    kv_bounds: F32


def rms_norm(x: F32, weight: F32, eps: float) -> F32:
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    out: F32 = (x / np.sqrt(var + np.float32(eps))).astype(np.float32) * weight
    return out


def rotary_tables(spec: Qwen3Spec, length: int) -> tuple[F32, F32]:
    """cos/sin of shape (length, head_dim / 2), computed as the graph builder does."""
    d = spec.head_dim
    inv_freq = (
        1.0 / (spec.rope_theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d))
    ).astype(np.float32)
    freqs = np.outer(np.arange(length, dtype=np.float32), inv_freq).astype(np.float32)
    return np.cos(freqs), np.sin(freqs)


def apply_rotary(x: F32, cos: F32, sin: F32) -> F32:
    """``x`` (heads, S, D), non-interleaved halves (transformers' ``rotate_half``)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class ReferenceQwen3:
    def __init__(self, spec: Qwen3Spec, ckpt: SafetensorsCheckpoint) -> None:
        self.spec = spec
        self.ckpt = ckpt

    def _w(self, name: str) -> F32:
        return self.ckpt.float32(name)

    def _linear(self, x: F32, name: str) -> F32:
        w = self._w(name)
        out: F32 = x @ w.T
        return out

    def forward(self, ids: Sequence[int], probes: Sequence[int]) -> ReferenceOutput:
        """Logits and per-layer residual states at ``probes`` for the sequence ``ids``."""
        s = self.spec
        n = len(ids)
        if n == 0 or any(not 0 <= p < n for p in probes):
            raise InvalidInput(f"probe positions must lie in [0, {n}), got {list(probes)}")
        if any(not 0 <= t < s.vocab_size for t in ids):
            raise InvalidInput(f"token ids must lie in [0, {s.vocab_size})")
        idx = np.asarray(probes, dtype=np.int64)
        x = np.stack(
            [self.ckpt.float32_rows("model.embed_tokens.weight", t, t + 1)[0] for t in ids]
        )
        cos, sin = rotary_tables(s, n)
        states = np.empty((s.num_layers, len(idx), s.hidden_size), np.float32)
        bounds = np.empty((s.num_layers, 2, s.num_kv_heads, s.head_dim), np.float32)
        for i in range(s.num_layers):
            x = self.layer(i, x, cos, sin, bounds[i])
            states[i] = x[idx]
        h = rms_norm(x[idx], self._w("model.norm.weight"), s.rms_norm_eps)
        return ReferenceOutput(logits=self.lm_head(h), layer_states=states, kv_bounds=bounds)

    def layer(self, i: int, x: F32, cos: F32, sin: F32, kv_bounds: F32 | None = None) -> F32:
        """Layer ``i`` on ``x``; ``kv_bounds`` (2, kv_heads, head_dim), when given, gets the
        layer's key and value bounds (``kv_quant.key_bounds`` / ``value_bounds``)."""
        s = self.spec
        p = f"model.layers.{i}"
        a = f"{p}.self_attn"
        n = x.shape[0]
        h = rms_norm(x, self._w(f"{p}.input_layernorm.weight"), s.rms_norm_eps)

        def heads(name: str, count: int, norm: str) -> F32:
            t = self._linear(h, name).reshape(n, count, s.head_dim).transpose(1, 0, 2)
            return rms_norm(t, self._w(norm), s.rms_norm_eps)

        q = apply_rotary(heads(f"{a}.q_proj.weight", s.num_heads, f"{a}.q_norm.weight"), cos, sin)
        k = heads(f"{a}.k_proj.weight", s.num_kv_heads, f"{a}.k_norm.weight")
        v = self._linear(h, f"{a}.v_proj.weight").reshape(n, s.num_kv_heads, s.head_dim)
        v = v.transpose(1, 0, 2)
        if kv_bounds is not None:
            kv_bounds[0] = key_bounds(k)
            kv_bounds[1] = value_bounds(v)
        k = apply_rotary(k, cos, sin)
        group = s.num_heads // s.num_kv_heads
        # (kv_heads, group, S, D) against (kv_heads, 1, S, D): GQA without repeating K/V
        qg = q.reshape(s.num_kv_heads, group, n, s.head_dim)
        scores = qg @ k[:, None].transpose(0, 1, 3, 2) * np.float32(s.head_dim**-0.5)
        scores = scores + np.triu(np.full((n, n), -np.inf, np.float32), k=1)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        heads_out = (scores @ v[:, None]).reshape(s.num_heads, n, s.head_dim)
        del scores
        attn: F32 = heads_out.transpose(1, 0, 2).reshape(n, s.q_size).astype(np.float32)
        x = x + self._linear(attn, f"{a}.o_proj.weight")
        h = rms_norm(x, self._w(f"{p}.post_attention_layernorm.weight"), s.rms_norm_eps)
        g = self._linear(h, f"{p}.mlp.gate_proj.weight")
        g *= 1.0 / (1.0 + np.exp(-g))  # SiLU
        g *= self._linear(h, f"{p}.mlp.up_proj.weight")
        out: F32 = x + self._linear(g, f"{p}.mlp.down_proj.weight")
        return out

    def lm_head(self, h: F32) -> F32:
        s = self.spec
        tied = s.tie_word_embeddings or "lm_head.weight" not in self.ckpt
        name = "model.embed_tokens.weight" if tied else "lm_head.weight"
        logits = np.empty((h.shape[0], s.vocab_size), np.float32)
        for start in range(0, s.vocab_size, _HEAD_ROWS):
            rows = self.ckpt.float32_rows(name, start, start + _HEAD_ROWS)
            logits[:, start : start + rows.shape[0]] = h @ rows.T
        return logits
