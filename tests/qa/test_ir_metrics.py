"""Ranking metrics, fusion and near-duplicate removal on hand-computed examples."""

from __future__ import annotations

import math
import random

import pytest

from qa.errors import InvalidInput
from qa.retrieval.fusion import (
    drop_near_duplicates,
    overlap_coefficient,
    reciprocal_rank_fusion,
    shingles,
)
from qa.retrieval.ir_metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k, unique_in_order


def test_ndcg_by_hand() -> None:
    qrels = {"a": 1, "b": 1}
    # Relevant at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4); ideal = 1 + 1/log2(3).
    got = ndcg_at_k(["x", "a", "b", "y"], qrels, 10)
    assert got == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["a", "b"], qrels, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], qrels, 10) == 0.0
    # Cut-off: the hit at rank 3 does not count at k=2 (ideal still has two relevant).
    assert ndcg_at_k(["x", "a", "b"], qrels, 2) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )


def test_ndcg_uses_graded_gain_and_ignores_zero_judgements() -> None:
    qrels = {"a": 2, "b": 1, "z": 0}
    # Linear gain as in trec_eval: ranking b, a gives (1 + 2/log2 3) / (2 + 1/log2 3).
    assert ndcg_at_k(["b", "a"], qrels, 10) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )
    assert ndcg_at_k(["z", "a", "b"], qrels, 10) < 1.0  # z is judged, but not relevant


def test_recall_and_mrr_by_hand() -> None:
    qrels = {"a": 1, "b": 1, "c": 1, "n": 0}
    ranked = ["x", "a", "n", "b", "y"]
    assert recall_at_k(ranked, qrels, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, qrels, 100) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, qrels, 10) == pytest.approx(0.5)
    assert mrr_at_k(ranked, qrels, 1) == 0.0
    assert mrr_at_k(["n", "y"], qrels, 10) == 0.0
    with pytest.raises(InvalidInput):
        recall_at_k(ranked, qrels, 0)


def test_documents_rank_by_their_best_chunk() -> None:
    assert unique_in_order(["d2", "d1", "d2", "d3", "d1"]) == ["d2", "d1", "d3"]


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([10.0], 95) == 10.0
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)
    assert percentile([], 50) == 0.0


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)
    assert [i for i, _ in fused] == [1, 3, 2]
    # Ties (same score) break by best single rank, then id: deterministic in input order.
    assert [i for i, _ in reciprocal_rank_fusion([[5, 6], [6, 5]])] == [5, 6]
    assert reciprocal_rank_fusion([[], []]) == []


def _brute_force(texts: list[list[str]], threshold: float, limit: int) -> list[int]:
    kept: list[int] = []
    for i, t in enumerate(texts):
        if len(kept) >= limit:
            break
        sh = shingles(t)
        if sh and any(overlap_coefficient(sh, shingles(texts[j])) >= threshold for j in kept):
            continue
        kept.append(i)
    return kept


def test_near_duplicates_by_overlap_of_term_bigrams() -> None:
    base = "the hotel limit in london is eur 220 per night".split()
    tail = base[3:]  # a short chunk lying inside a longer one
    neighbour = base[-3:] + "meals are reimbursed up to eur 60 per day in every city".split()
    other = "annual leave is 27 days".split()
    items = [base, tail, list(base), neighbour, other]
    kept, dropped = drop_near_duplicates(items, lambda t: t, threshold=0.9, limit=10)
    assert kept == [base, neighbour, other] and dropped == 2
    # Above 1 the check is off; limit stops early.
    assert drop_near_duplicates(items, lambda t: t, threshold=1.5, limit=10) == (items, 0)
    assert drop_near_duplicates(items, lambda t: t, threshold=0.9, limit=1) == ([base], 0)
    with pytest.raises(InvalidInput):
        drop_near_duplicates(items, lambda t: t, threshold=0.0, limit=3)


def test_inverted_dedup_matches_pairwise_definition() -> None:
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(30)]
    texts: list[list[str]] = []
    for _ in range(200):
        if texts and rng.random() < 0.3:  # a perturbed copy of an earlier text
            src = list(rng.choice(texts))
            start = rng.randrange(len(src))
            texts.append([*src[start:], rng.choice(vocab)])
        else:
            texts.append([rng.choice(vocab) for _ in range(rng.randrange(1, 15))])
    for threshold in (0.5, 0.8, 0.9, 1.0):
        kept, _ = drop_near_duplicates(
            list(range(len(texts))), lambda i: texts[i], threshold=threshold, limit=120
        )
        assert kept == _brute_force(texts, threshold, 120)
