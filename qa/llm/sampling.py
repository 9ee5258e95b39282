"""Next-token choice from one row of logits: greedy, or temperature / top-k / top-p sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.errors import InvalidInput


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 512
    temperature: float = 0.7  # <= 0 means greedy (argmax)
    top_p: float = 0.8
    top_k: int = 20  # 0 = no top-k cut
    seed: int | None = None

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidInput(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0 or not np.isfinite(self.temperature):
            raise InvalidInput(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k must be >= 0, got {self.top_k}")


class Sampler:
    def __init__(self, params: SamplingParams, vocab_limit: int) -> None:
        params.validate()
        self.params = params
        # Rows past the tokenizer's vocabulary are padding in Qwen's embedding (151,669 real
        # tokens, 151,936 rows); never choose one, the tokenizer could not decode it.
        self.vocab_limit = vocab_limit
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: npt.NDArray[np.float32]) -> int:
        row = logits[: self.vocab_limit]
        p = self.params
        if p.temperature <= 0:
            return int(np.argmax(row))
        scaled = row.astype(np.float64) / p.temperature
        if 0 < p.top_k < scaled.size:
            cand = np.argpartition(scaled, -p.top_k)[-p.top_k :]
        else:
            cand = np.arange(scaled.size)
        order = cand[np.argsort(scaled[cand])[::-1]]  # most likely first
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        if p.top_p < 1:
            # keep the smallest head whose mass reaches top_p (at least one token)
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self.rng.choice(order.size, p=probs)])
