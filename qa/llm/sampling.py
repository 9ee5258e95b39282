"""Next-token choice from one row of logits: greedy, or temperature / top-k / top-p sampling.

The defaults are the model folder's own: ``generation_config.json`` (temperature 0.7, top_p
0.8, top_k 20 for Qwen3-4B-Instruct-2507) travels into the built folder, and a request
that leaves a setting out (``None``) gets the folder's value, never a constant of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qa.errors import ConfigError, InvalidInput
from qa.llm.spec import read_json_object

GENERATION_CONFIG = "generation_config.json"


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
        if self.params.temperature <= 0:
            return int(np.argmax(logits[: self.vocab_limit]))
        order, probs = self._distribution(logits)
        return int(order[self.rng.choice(order.size, p=probs)])

    def verify(self, logits: npt.NDArray[np.float32], draft: int) -> tuple[bool, int]:
        """Accept or replace a drafted token: ``(True, draft)``, or ``(False, token)``.

        Greedy: the draft is accepted exactly when it is the argmax, so speculation
        changes no token. Sampling: a prompt-lookup draft is proposed with certainty
        (q = 1 on it), so speculative sampling's rule accepts it with probability
        p(draft) and otherwise draws from max(p - q, 0) renormalized, which is p without
        the draft; the token returned is distributed exactly as ``self(logits)`` would be.
        """
        if self.params.temperature <= 0:
            token = int(np.argmax(logits[: self.vocab_limit]))
            return token == draft, token
        order, probs = self._distribution(logits)
        hit = np.flatnonzero(order == draft)
        if hit.size:
            if self.rng.random() < probs[hit[0]]:
                return True, draft
            probs = probs.copy()
            probs[hit[0]] = 0.0
            probs /= probs.sum()
        return False, int(order[self.rng.choice(order.size, p=probs)])

    def _distribution(
        self, logits: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """The tokens that may be sampled (most likely first) and their probabilities,
        after temperature, top-k and top-p."""
        row = logits[: self.vocab_limit]
        p = self.params
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
        return order, probs


@dataclass(frozen=True)
class SamplingDefaults:
    """What a request that sets nothing samples with: the model folder's choice.

    Without a ``generation_config.json``, Qwen3-Instruct's published recommendation. A file
    that leaves a field out means transformers' default for it (what ``generate`` would
    use); ``do_sample: false`` means greedy.
    """

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> SamplingDefaults:
        path = Path(model_dir) / GENERATION_CONFIG
        if not path.is_file():
            return cls()
        cfg = read_json_object(path, "generation config")
        try:
            defaults = cls(
                temperature=0.0
                if cfg.get("do_sample") is False
                else float(cfg.get("temperature", 1.0)),
                top_p=float(cfg.get("top_p", 1.0)),
                top_k=int(cfg.get("top_k", 50)),
            )
            SamplingParams(1, defaults.temperature, defaults.top_p, defaults.top_k).validate()
        except (TypeError, ValueError, InvalidInput) as exc:
            raise ConfigError(f"{path}: unusable sampling settings ({exc})") from exc
        return defaults

    def params(
        self,
        max_new_tokens: int,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> SamplingParams:
        """The request's settings, each one it left out (``None``) from these defaults."""
        return SamplingParams(
            max_new_tokens,
            self.temperature if temperature is None else temperature,
            self.top_p if top_p is None else top_p,
            self.top_k if top_k is None else top_k,
            seed,
        )
