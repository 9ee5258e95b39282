"""Rank fusion and near-duplicate removal: pure functions over ids and term lists.

Reciprocal rank fusion (Cormack et al., 2009) combines rankings whose scores are not on
one scale (cosine similarity vs. BM25) by rank alone::

    rrf(d) = sum over rankings r containing d of 1 / (k + rank_r(d))      (rank from 1)

``k = 60`` is the paper's value; it damps the difference between the first few ranks so
that one list cannot dominate with a single confident hit.

Near-duplicates are judged on *term bigram shingles* of the analyzed text (the terms the
DB already stores for BM25, so nothing is re-analyzed) with the overlap coefficient
``|A ∩ B| / min(|A|, |B|)``. The overlap coefficient, not Jaccard, because the typical
duplicate is a short tail chunk lying almost entirely inside its longer neighbour, or the
same file uploaded twice; Jaccard would call the first pair different. Neighbouring chunks
that only share the chunker's overlap (~20 % of a chunk) stay well below any sensible
threshold and are both kept: each brings text the other lacks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from qa.errors import InvalidInput

T = TypeVar("T")

DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = DEFAULT_RRF_K
) -> list[tuple[int, float]]:
    """Fuse rankings of ids (best first) into ``(id, score)`` by descending score.

    Ties are broken by the best single rank an id reached, then by id, so the result is
    deterministic whatever order the inputs came in.
    """
    if k < 0:
        raise InvalidInput(f"rrf k must be >= 0, got {k}")
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best[item] = min(best.get(item, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


def shingles(terms: Sequence[str]) -> frozenset[int]:
    """Hashed term bigrams; a one-term text is its single term, an empty one the empty set.

    Python's string hash is salted per process, which is fine: shingles are compared only
    within one request and never stored.
    """
    if len(terms) == 1:
        return frozenset((hash(terms[0]),))
    return frozenset(hash((a, b)) for a, b in itertools.pairwise(terms))


def overlap_coefficient(a: frozenset[int], b: frozenset[int]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def drop_near_duplicates(
    items: Iterable[T],
    terms_of: Callable[[T], Sequence[str]],
    *,
    threshold: float,
    limit: int,
) -> tuple[list[T], int]:
    """Keep items in order, skipping any too similar to one already kept, up to ``limit``.

    Returns ``(kept, dropped)``. A ``threshold`` above 1 disables the check. Stops reading
    ``items`` once ``limit`` are kept, so the cost is bounded by what the caller needs.
    """
    if not threshold > 0.0:  # written so that NaN is refused too
        raise InvalidInput(f"dedup threshold must be > 0, got {threshold}")
    kept: list[T] = []
    sizes: list[int] = []
    # shingle -> positions in ``kept`` holding it. Counting shared shingles through this
    # inverted list is exact and, since most term bigrams are rare, touches far fewer
    # entries than intersecting with every kept passage (an evaluation keeps hundreds).
    postings: dict[int, list[int]] = {}
    dropped = 0
    for item in items:
        if len(kept) >= limit:
            break
        sh = shingles(terms_of(item)) if threshold <= 1.0 else frozenset()
        shared: dict[int, int] = {}
        for s in sh:
            for j in postings.get(s, ()):
                shared[j] = shared.get(j, 0) + 1
        if any(n >= threshold * min(len(sh), sizes[j]) for j, n in shared.items()):
            dropped += 1
            continue
        for s in sh:
            postings.setdefault(s, []).append(len(kept))
        kept.append(item)
        sizes.append(len(sh))
    return kept, dropped


__all__ = [
    "DEFAULT_RRF_K",
    "drop_near_duplicates",
    "overlap_coefficient",
    "reciprocal_rank_fusion",
    "shingles",
]
