"""Prompt lookup: draft the next tokens from where the text so far repeats itself.

Answers grounded in retrieved passages copy phrases from them: when the last ``n`` tokens
(``n`` from ``max_ngram`` down to ``min_ngram``) occurred earlier in the prompt or the
answer, the tokens that followed that earlier occurrence are a likely continuation. The
generator checks such a draft in one forward pass (``generate.py``); a right guess yields
several tokens for about the price of one, a wrong one costs a slightly wider step.

The n-grams are indexed as tokens arrive (each position once), so a draft costs a few
dictionary lookups however long the prompt is. The latest earlier occurrence wins: in a
chat it is the nearest context, and it is the one a repetition loop continues.
"""

from __future__ import annotations

from collections.abc import Iterable

#: default longest draft (``DOCQA_LLM_DRAFT_TOKENS``); ``DraftLength`` drafts fewer while
#: drafts are not being kept
DRAFT_TOKENS = 4
#: unigram matches are mostly noise (articles, punctuation) and would make the model verify
#: wrong drafts; two tokens of context already pin a phrase down in a passage
MIN_NGRAM = 2
MAX_NGRAM = 4


class PromptLookup:
    def __init__(
        self, tokens: Iterable[int], min_ngram: int = MIN_NGRAM, max_ngram: int = MAX_NGRAM
    ) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.min_ngram = min_ngram
        self.max_ngram = max_ngram
        self.tokens: list[int] = []
        #: n-gram -> where its latest occurrence's continuation starts
        self._next: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        seq = self.tokens
        for token in tokens:
            seq.append(int(token))
            p = len(seq) - 1
            # the n-grams ending just before p now have a continuation: p onwards
            for n in range(self.min_ngram, min(self.max_ngram, p) + 1):
                self._next[tuple(seq[p - n : p])] = p

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the longest suffix seen before, or none."""
        seq = self.tokens
        if k < 1:
            return []
        for n in range(min(self.max_ngram, len(seq)), self.min_ngram - 1, -1):
            start = self._next.get(tuple(seq[-n:]))
            if start is not None:
                return seq[start : start + k]
        return []


#: what each drafted token adds to the cost of a step, as a fraction of a one-token step:
#: on the full Qwen3-4B shape (blockwise INT8, 2 threads, AMD EPYC Zen 4) steps of 1, 2, 3
#: and 5 tokens took 126, 162, 198 and 252 ms (``bench_llm --full``; 0.15 in a quieter
#: run); the larger figure keeps drafts short unless they are kept
DRAFT_TOKEN_COST = 0.25


class DraftLength:
    """How many tokens to draft next, from how often drafts have been kept lately.

    With acceptance rate ``a`` per drafted token (each kept only if the ones before it
    were), a draft of ``k`` yields ``1 + a + ... + a^k`` tokens for a step costing
    ``1 + DRAFT_TOKEN_COST * k``; the ``k`` with the best ratio is drafted, 0 when none
    beats a plain step. The rate is estimated from recent drafts (older ones fade) with a
    prior of 1/3; while nothing is drafted the evidence fades too, so a stretch of bad
    guesses does not switch speculation off for the rest of the answer.
    """

    # Chosen by simulation (the cases of ``test_draft_length_follows_how_often_drafts_are_kept``):
    # from a run of kept drafts, 8 wholly rejected ones switch drafting off; then a 1-token
    # probe every ~10 steps, so the worst case (nothing ever kept) costs 2% of the steps.
    FADE_PER_DRAFT = 0.7
    FADE_PER_IDLE_STEP = 0.95
    #: the prior: 1 token in 3 kept, worth 3 drafted tokens of evidence (so the first
    #: draft of an answer is 1 token, and lengths grow as guesses are kept)
    PRIOR_KEPT, PRIOR_DRAFTED = 1.0, 3.0

    def __init__(self, most: int, cost: float = DRAFT_TOKEN_COST) -> None:
        self.most = most
        self.cost = cost
        self._kept = 0.0
        self._drafted = 0.0

    @property
    def acceptance(self) -> float:
        return (self._kept + self.PRIOR_KEPT) / (self._drafted + self.PRIOR_DRAFTED)

    def next(self) -> int:
        a = min(self.acceptance, 0.999)
        best, best_gain = 0, 1.0
        for k in range(1, self.most + 1):
            gain = (1.0 - a ** (k + 1)) / (1.0 - a) / (1.0 + self.cost * k)
            if gain > best_gain:
                best, best_gain = k, gain
        return best

    def record(self, drafted: int, kept: int) -> None:
        """A step's outcome: ``drafted`` guesses (0: none was made), ``kept`` of them."""
        if drafted == 0:
            self._kept *= self.FADE_PER_IDLE_STEP
            self._drafted *= self.FADE_PER_IDLE_STEP
            return
        self._kept = self._kept * self.FADE_PER_DRAFT + kept
        self._drafted = self._drafted * self.FADE_PER_DRAFT + drafted
