"""Retrieval quality on real benchmarks (slow: embeds thousands of passages once).

The built eval indexes are cached under ``var/test-eval`` (or ``$DOCQA_TEST_EVAL_DIR``),
keyed by dataset, model, backend and chunking, so a rerun only runs the queries. The
floors are what this setup measured, rounded down a little to absorb the INT8 backend's
batch-dependent jitter; see the README for the full figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.evaluation import EvalReport, evaluate_retrieval
from qa.settings import Settings
from tests.conftest import REPO, corpus_path
from tests.ingest.chinese_scripts import (
    character_bm25_ndcg,
    character_bm25_ndcg_on_chunks,
    convert_beir,
    converter,
)

pytestmark = pytest.mark.eval

# Measured with the packaged MiniLM (onnx-int8), chunks of 200 tokens: XQuAD zh BM25 0.9653,
# hybrid 0.9648 (0.9585 / 0.9580 before character bigrams; the English model sits out
# Chinese questions); XQuAD en hybrid 0.9709. XQuAD zh made Traditional (OpenCC s2tw):
# BM25 0.9651, hybrid 0.9648 (BM25 0.9418 before Traditional was made Simplified for the
# terms); a character unigram+bigram BM25 0.9639 over the same chunks, 0.9666 over whole
# paragraphs (chunking costs every analysis about 0.003 on XQuAD).
ZH_BM25_FLOOR = 0.95
ZH_HYBRID_FLOOR = 0.95
EN_HYBRID_FLOOR = 0.96


@pytest.fixture(scope="module")
def settings() -> Settings:
    data = Path(os.environ.get("DOCQA_TEST_EVAL_DIR", REPO / "var" / "test-eval"))
    return Settings(data_dir=data, embed_backend="onnx-int8")


def _show(report: EvalReport) -> None:
    print(
        f"\n{Path(report.dataset).name} ({report.split}): {report.queries} queries, "
        f"{report.documents} docs, {report.chunks} chunks, {report.model_id} ({report.backend})"
    )
    for s in report.scores:
        print(
            f"  {s.mode:8} nDCG@10 {s.ndcg_at_10:.4f}  R@10 {s.recall_at_10:.4f}  "
            f"R@100 {s.recall_at_100:.4f}  MRR@10 {s.mrr_at_10:.4f}  "
            f"p50 {s.latency_p50_ms:.1f} ms  p95 {s.latency_p95_ms:.1f} ms"
        )


def test_scifact(settings: Settings) -> None:
    report = evaluate_retrieval(corpus_path("retrieval", "scifact"), settings=settings)
    _show(report)
    assert report.queries == 300 and report.documents == 5183
    hybrid = report.by_mode("hybrid")
    assert hybrid.ndcg_at_10 >= 0.68  # the issue's bar; BM25's published figure is 0.665
    assert hybrid.ndcg_at_10 > report.by_mode("dense").ndcg_at_10
    assert hybrid.ndcg_at_10 > report.by_mode("lexical").ndcg_at_10
    assert hybrid.recall_at_100 >= 0.90


def test_xquad_zh(settings: Settings) -> None:
    report = evaluate_retrieval(corpus_path("qa", "xquad", "derived_beir_zh"), settings=settings)
    _show(report)
    assert report.queries == 1190 and report.documents == 240
    # MiniLM is an English model; Chinese retrieval rests on BM25 over jieba terms.
    assert report.by_mode("lexical").ndcg_at_10 >= ZH_BM25_FLOOR
    assert report.by_mode("hybrid").ndcg_at_10 >= ZH_HYBRID_FLOOR


def test_xquad_zh_traditional(settings: Settings, tmp_path: Path) -> None:
    """All of XQuAD zh converted here to Traditional (OpenCC s2tw, Taiwan standard): no
    worse than a character unigram+bigram BM25 over the same chunks, and as good as the
    Simplified original (the analyzer makes both Simplified)."""
    source = corpus_path("qa", "xquad", "derived_beir_zh")
    beir = convert_beir(source, tmp_path / "derived_beir_zh_hant", converter("s2tw"))
    report = evaluate_retrieval(beir, settings=settings)
    _show(report)
    same_chunks = character_bm25_ndcg_on_chunks(report)
    whole_documents = character_bm25_ndcg(beir)
    print(
        f"  character unigram+bigram BM25: nDCG@10 {same_chunks:.4f} over the same chunks, "
        f"{whole_documents:.4f} over whole paragraphs"
    )
    assert report.queries == 1190
    hybrid, lexical = report.by_mode("hybrid"), report.by_mode("lexical")
    assert lexical.ndcg_at_10 >= max(same_chunks, ZH_BM25_FLOOR)
    assert hybrid.ndcg_at_10 >= max(same_chunks, ZH_HYBRID_FLOOR)


def test_xquad_en(settings: Settings) -> None:
    report = evaluate_retrieval(corpus_path("qa", "xquad", "derived_beir_en"), settings=settings)
    _show(report)
    assert report.by_mode("hybrid").ndcg_at_10 >= EN_HYBRID_FLOOR
