"""Optional second-stage ranking of retrieved passages by a cross-encoder.

A cross-encoder reads question and passage together, which ranks better than comparing two
independent embeddings but costs one forward pass per passage: on two CPU cores a MiniLM-size
cross-encoder scores ~20 passages in a few hundred milliseconds, so it is applied to the
short list that survived fusion, never to the whole collection. No cross-encoder ships with
docqa; an admin copies one (a sentence-transformers or plain Hugging Face
sequence-classification folder) onto the machine and names the folder.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import ConfigError, EmbeddingError


class Reranker(abc.ABC):
    """Scores ``(question, passage)`` pairs; higher means more relevant."""

    @abc.abstractmethod
    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """One finite score per passage, in the order given."""


class CrossEncoderReranker(Reranker):
    def __init__(
        self, model_dir: str | Path, *, max_length: int = 512, batch_size: int = 16
    ) -> None:
        path = Path(model_dir).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"cross-encoder folder not found or incomplete (no config.json): {path}"
            )
        if batch_size < 1 or max_length < 8:
            raise ConfigError("cross-encoder batch_size must be >= 1 and max_length >= 8")
        from sentence_transformers import CrossEncoder

        self.model_dir = path.resolve()
        self.batch_size = batch_size
        try:
            self._model = CrossEncoder(
                str(self.model_dir), device="cpu", local_files_only=True, max_length=max_length
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load cross-encoder from {self.model_dir}: {exc}") from exc

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        try:
            out: Any = self._model.predict(
                [(question, p) for p in passages],
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        except (RuntimeError, ValueError) as exc:
            raise EmbeddingError(f"cross-encoder {self.model_dir.name} failed: {exc}") from exc
        scores = np.asarray(out, dtype=np.float64)
        if scores.ndim == 2:
            # A classifier with several labels: its last label is "relevant" by convention
            # (e.g. [irrelevant, relevant]); a single-logit model is already 1-D.
            scores = scores[:, -1]
        if scores.shape != (len(passages),) or not np.isfinite(scores).all():
            raise EmbeddingError(
                f"cross-encoder {self.model_dir.name} returned scores of shape {scores.shape}"
            )
        return [float(s) for s in scores]

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({str(self.model_dir)!r})"


__all__ = ["CrossEncoderReranker", "Reranker"]
