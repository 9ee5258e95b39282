"""What a summary may be asked for: one frozen, validated set of options.

A job stores them as a dict in its row (``to_dict``) and its runner reads them back
(``from_dict``, which ignores fields an older or newer version wrote).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from qa.errors import require
from qa.limits import MAX_SUMMARY_STATEMENTS
from qa.llm.sampling import SamplingParams
from qa.messages import N_


@dataclass(frozen=True)
class SummaryOptions:
    #: statements in a document summary, and in a collection's synthesis
    max_statements: int = 10
    statements_per_window: int = 3
    #: statements per document inside a collection summary
    statements_per_document: int = 5
    #: cap on a window's text: prefill time on a CPU grows with it
    window_tokens: int = 3000
    max_new_tokens: int = 256
    temperature: float = 0.3
    top_p: float = 0.8
    top_k: int = 20
    seed: int | None = 0
    #: window size without a model (sentences are scored, not generated)
    extractive_window_chars: int = 3000

    def validate(self) -> None:
        require(
            (
                1 <= self.max_statements <= MAX_SUMMARY_STATEMENTS,
                N_("max_statements must be between 1 and %(max)s", max=MAX_SUMMARY_STATEMENTS),
            ),
            (1 <= self.statements_per_window <= 20, "statements_per_window: 1 to 20"),
            (1 <= self.statements_per_document <= 20, "statements_per_document: 1 to 20"),
            (64 <= self.window_tokens <= 32768, "window_tokens: 64 to 32768"),
            (16 <= self.max_new_tokens <= 4096, "max_new_tokens: 16 to 4096"),
            (0.0 <= self.temperature <= 2.0, "temperature: 0 to 2"),
            (0.0 < self.top_p <= 1.0, "top_p must be in (0, 1]"),
            (0 <= self.top_k <= 1000, "top_k: 0 to 1000"),
            (200 <= self.extractive_window_chars <= 100_000, "extractive_window_chars"),
        )

    def sampling(self, max_new_tokens: int) -> SamplingParams:
        """The model's sampling for one prompt; its room to answer depends on the prompt."""
        return SamplingParams(max_new_tokens, self.temperature, self.top_p, self.top_k, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SummaryOptions:
        known = {f.name for f in fields(cls)}
        options = cls(**{k: v for k, v in (data or {}).items() if k in known})
        options.validate()
        return options
