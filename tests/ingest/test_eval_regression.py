"""Retrieval quality, CI size: a fixed slice of XQuAD in Chinese and English.

The full evaluations (SciFact, all of XQuAD) run in ``make eval`` (``test_eval_quality.py``).
This slice keeps the two properties CI must never lose, in about half a minute each:
Chinese questions find their paragraph through jieba BM25, and on English every mode
finds it and fusion does not fall below the dense ranking. The slice takes every fourth
paragraph, so the distractors still include other paragraphs of the same article.
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest.evaluation import EvalReport, evaluate_retrieval
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from tests.conftest import corpus_path

EVERY_NTH_PARAGRAPH = 4
QUERIES = 40

# nDCG@10 measured on this slice with the packaged MiniLM (torch backend), 200-token
# chunks: zh lexical and hybrid 1.0 (dense 0.25); en hybrid 0.979, dense 0.957, lexical
# 0.994. Floors sit a little below, so a real regression (tokenizer, fusion, index) fails.
ZH_FLOOR = 0.95
EN_FLOOR = 0.93


def _slice(source: Path, out: Path) -> Path:
    """A BEIR folder with every n-th paragraph of ``source`` and the questions about them."""
    docs = [json.loads(line) for line in (source / "corpus.jsonl").read_text().splitlines()]
    kept = {d["_id"] for d in docs[::EVERY_NTH_PARAGRAPH]}
    rows = (source / "qrels" / "test.tsv").read_text().splitlines()[1:]
    judged = [r.split("\t") for r in rows]
    qids = sorted({q for q, d, _ in judged if d in kept})
    step = max(1, len(qids) // QUERIES)
    chosen = set(qids[::step][:QUERIES])
    (out / "qrels").mkdir(parents=True)
    with (out / "corpus.jsonl").open("w") as fh:
        for d in docs:
            if d["_id"] in kept:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w") as fh:
        for line in (source / "queries.jsonl").read_text().splitlines():
            if json.loads(line)["_id"] in chosen:
                fh.write(line + "\n")
    qrels = [f"{q}\t{d}\t{s}" for q, d, s in judged if q in chosen]
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels))
    return out


def _evaluate(lang: str, tmp_path: Path, embedder: Embedder) -> EvalReport:
    source = corpus_path("qa", "xquad", f"derived_beir_{lang}")
    beir = _slice(source, tmp_path / f"xquad-{lang}")
    report = evaluate_retrieval(
        beir, settings=Settings(data_dir=tmp_path / "var"), embedder=embedder, pool=100
    )
    assert report.queries == QUERIES
    print(f"\nxquad {lang} slice: {[(s.mode, round(s.ndcg_at_10, 4)) for s in report.scores]}")
    return report


def test_chinese_questions_find_their_paragraph(tmp_path: Path, embedder: Embedder) -> None:
    report = _evaluate("zh", tmp_path, embedder)
    # MiniLM is an English model: Chinese retrieval rests on BM25 over jieba terms.
    assert report.by_mode("lexical").ndcg_at_10 >= ZH_FLOOR
    assert report.by_mode("hybrid").ndcg_at_10 >= ZH_FLOOR


def test_english_questions_find_their_paragraph_in_every_mode(
    tmp_path: Path, embedder: Embedder
) -> None:
    report = _evaluate("en", tmp_path, embedder)
    for mode in ("hybrid", "dense", "lexical"):
        assert report.by_mode(mode).ndcg_at_10 >= EN_FLOOR, mode
    assert report.by_mode("hybrid").ndcg_at_10 >= report.by_mode("dense").ndcg_at_10
