"""Ranking metrics with the definitions BEIR reports (pytrec_eval / trec_eval).

* nDCG@k: gain = graded relevance (linear, not 2^rel - 1), discount log2(rank + 1); the
  ideal ranking is the query's judged documents sorted by relevance.
* Recall@k: relevant documents in the top k / all relevant documents of the query.
* MRR@k: 1 / rank of the first relevant document in the top k, else 0.

A document is relevant when its judged score is > 0 (BEIR qrels may list 0 for judged
non-relevant ones). ``ranked`` must hold each document once, best first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from qa.errors import InvalidInput


def _check_k(k: int) -> None:
    if k < 1:
        raise InvalidInput(f"cutoff k must be >= 1, got {k}")


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    dcg = sum(
        qrels.get(doc, 0) / math.log2(rank + 1)
        for rank, doc in enumerate(ranked[:k], start=1)
        if qrels.get(doc, 0) > 0
    )
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(rank + 1) for rank, r in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    relevant = {doc for doc, r in qrels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    for rank, doc in enumerate(ranked[:k], start=1):
        if qrels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def unique_in_order(items: Iterable[str]) -> list[str]:
    """First occurrence of each item: for a ranked list of chunks' documents this scores
    a document by its best chunk (max over chunks)."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return 0.0
    if not 0 <= q <= 100:
        raise InvalidInput(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


__all__ = ["mrr_at_k", "ndcg_at_k", "percentile", "recall_at_k", "unique_in_order"]
