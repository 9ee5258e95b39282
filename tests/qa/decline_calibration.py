"""How the decline thresholds of ``qa.answering.evidence`` were chosen, and re-checking them.

    .venv/bin/python -m tests.qa.decline_calibration [--data-dir var/test-eval]

Not a test (no ``test_`` prefix: CI never runs it); ``make eval`` checks the end result
through ``docqa eval answers`` (tests/ingest/test_eval_answers.py). Minutes on 2 cores,
most of it building the SciFact index once (cached under the data dir like ``make eval``).

Answerable: every XQuAD question against its own language's paragraphs. Off-topic: the
SciFact claims against XQuAD en, XQuAD questions against SciFact, and the hand-written
questions of tests/qa/data (world facts, other domains, Chinese history and maths) against
XQuAD in both languages. For each pair it retrieves like the answer service (hybrid,
k = 6), gathers the evidence, and prints per set the share declined at the current
thresholds, and per language the support's 5th percentile over the answerable questions
(where a threshold stops costing more than 5 % false declines).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ingest.evaluation import EVAL_COLLECTION, _build_index
from qa.answering.evidence import judge, support_score
from qa.retrieval.embedder import get_embedder
from qa.retrieval.index_store import IndexReader, IndexStore
from qa.retrieval.retriever import Retriever
from qa.settings import Settings
from qa.store.catalog import get_collection
from qa.store.db.engine import Database
from tests.conftest import REPO, corpus_path

DATA = Path(__file__).parent / "data"


def _queries(beir_dir: Path, limit: int | None = None) -> list[str]:
    with (beir_dir / "queries.jsonl").open(encoding="utf-8") as f:
        texts = [str(json.loads(line)["text"]) for line in f if line.strip()]
    random.Random(1).shuffle(texts)
    return texts[:limit] if limit else texts


def _own(name: str) -> list[str]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [str(json.loads(line)["text"]) for line in f if line.strip()]


def _retrievers(
    settings: Settings, names: tuple[str, ...] = ("en", "zh", "sf")
) -> Iterator[tuple[str, Retriever, int]]:
    embedder = get_embedder(settings)
    folders = {
        "en": corpus_path("qa", "xquad", "derived_beir_en"),
        "zh": corpus_path("qa", "xquad", "derived_beir_zh"),
        "sf": corpus_path("retrieval", "scifact"),
    }
    for name in names:
        folder = folders[name]
        built = _build_index(folder, embedder, settings, None)
        db = Database(built.db_url)
        with db.session() as session:
            coll = get_collection(session, EVAL_COLLECTION).id
        yield name, Retriever(db, IndexReader(IndexStore(built.index_dir)), embedder), coll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "test-eval")
    parser.add_argument("--backend", default="onnx-int8", choices=("torch", "onnx-int8"))
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir, embed_backend=args.backend)
    retrievers = {name: (r, coll) for name, r, coll in _retrievers(settings)}
    xquad_en = corpus_path("qa", "xquad", "derived_beir_en")
    xquad_zh = corpus_path("qa", "xquad", "derived_beir_zh")
    scifact = corpus_path("retrieval", "scifact")
    sets = [
        ("en", "XQuAD en", True, _queries(xquad_en)),
        ("zh", "XQuAD zh", True, _queries(xquad_zh)),
        ("en", "SciFact claims", False, _queries(scifact, 300)),
        ("sf", "XQuAD en", False, _queries(xquad_en, 300)),
        ("sf", "XQuAD zh", False, _queries(xquad_zh, 100)),
        ("en", "off_topic_en", False, _own("off_topic_en.jsonl")),
        ("zh", "off_topic_zh", False, _own("off_topic_zh.jsonl")),
        ("en", "off_topic_zh", False, _own("off_topic_zh.jsonl")),
        ("zh", "off_topic_en", False, _own("off_topic_en.jsonl")),
    ]
    answerable: dict[str, list[float]] = {}
    for collection, name, is_answerable, questions in sets:
        retriever, coll = retrievers[collection]
        declined = 0
        for question in questions:
            result = retriever.retrieve(question, [coll], k=6)
            verdict = judge(question, result)
            declined += not verdict.supported
            if is_answerable:
                support, _ = support_score(verdict.evidence)
                answerable.setdefault(result.language, []).append(support)
        kind = "false declines" if is_answerable else "declined"
        print(
            f"{name:>15} -> {collection}: {len(questions):5} questions, {kind} "
            f"{declined / len(questions):.3f}"
        )
    for language, supports in sorted(answerable.items()):
        print(f"answerable {language}: support 5th percentile {np.percentile(supports, 5):.3f}")


if __name__ == "__main__":
    main()
