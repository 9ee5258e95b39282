"""``evaluate_retrieval`` end to end on a tiny BEIR folder written by the test (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.evaluation import evaluate_retrieval, load_queries
from qa.errors import InvalidInput
from qa.retrieval.embedder import Embedder
from qa.settings import Settings

DOCS = {
    "d1": ("Ferries", "The harbour ferry to the island leaves every forty minutes from pier 3."),
    "d2": ("Lighthouses", "The old lighthouse was automated in 1985 and now houses a museum."),
    "d3": ("Bicycles", "Bicycle parking in the cellar is free for employees with a badge."),
    "d4": ("Coffee", "The espresso machine on the fourth floor is descaled every Friday."),
    "d5": ("Printers", "Colour printing needs a PIN code entered at the printer itself."),
    # Longer than one chunk: its hits must map back to one document.
    "d6": ("Canteen", " ".join(["The canteen serves soup and bread at noon."] * 60)),
}
QUERIES = {
    "q1": "How often does the ferry to the island leave?",
    "q2": "When was the lighthouse automated?",
    "q3": "Where can employees park a bicycle?",
    "q4": "What does the canteen serve at noon?",
    "q5": "Is there any judged document for this?",  # only a 0 judgement: not scored
}
QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 1), ("q4", "d6", 1), ("q5", "d4", 0)]


def _write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as fh:
        for doc_id, (title, text) in DOCS.items():
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in QRELS)]
    lines.append("q-missing\td1\t1")  # judged but absent from queries.jsonl: skipped
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_scores_modes_and_reuses_the_built_index(tmp_path: Path, embedder: Embedder) -> None:
    beir = _write_beir(tmp_path / "tiny")
    settings = Settings(data_dir=tmp_path / "var")
    first = evaluate_retrieval(beir, settings=settings, embedder=embedder, pool=100)
    assert first.queries == 4 and first.documents == 6 and first.chunks > 6
    assert not first.index_cached
    assert {s.mode for s in first.scores} == {"hybrid", "dense", "lexical"}
    for s in first.scores:
        # Four unambiguous questions: every mode ranks the right document first.
        assert s.ndcg_at_10 == pytest.approx(1.0) and s.mrr_at_10 == pytest.approx(1.0)
        assert s.recall_at_10 == s.recall_at_100 == pytest.approx(1.0)
        assert 0 < s.latency_p50_ms <= s.latency_p95_ms
    assert first.index_dir.is_relative_to(settings.data_dir / "eval")

    again = evaluate_retrieval(beir, settings=settings, embedder=embedder, limit_queries=2)
    assert again.index_cached and again.index_dir == first.index_dir and again.queries == 2
    # The product DB of this data dir was never created: the eval has its own.
    assert not (settings.data_dir / "docqa.db").exists()


def test_bad_folders_and_arguments(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    with pytest.raises(InvalidInput, match="qrels"):
        evaluate_retrieval(tmp_path, settings=settings, embedder=embedder)
    beir = _write_beir(tmp_path / "tiny")
    with pytest.raises(InvalidInput, match="split"):
        load_queries(beir, "../etc")
    with pytest.raises(InvalidInput):
        evaluate_retrieval(beir, settings=settings, embedder=embedder, limit_queries=0)
    with pytest.raises(InvalidInput, match="pool"):
        evaluate_retrieval(beir, settings=settings, embedder=embedder, pool=10)
    (beir / "queries.jsonl").write_text("{not json\n")
    with pytest.raises(InvalidInput, match="not JSON"):
        evaluate_retrieval(beir, settings=settings, embedder=embedder)
