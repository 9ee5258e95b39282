"""BM25: exact scores on a hand-checked corpus, ranking on a real one, pickle-free files."""

from __future__ import annotations

import json
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from qa.errors import IndexUnavailable, InvalidInput
from qa.retrieval.bm25 import MATRIX_FILE, VOCAB_FILE, BM25Index
from qa.retrieval.lexical import analyze
from tests.conftest import CORPUS

SCIFACT = CORPUS / "retrieval" / "scifact" / "corpus.jsonl"


def _ids(n: int, start: int = 100) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64)


def test_scores_match_the_formula() -> None:
    docs = [["a", "b", "a"], ["b", "c"], ["c", "c", "c", "d"]]
    index = BM25Index.build(_ids(3), docs)
    n, avgdl, k1, b = 3, 3.0, 1.2, 0.75

    def weight(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))

    result = dict(index.search(["a", "c"], 10))
    assert result.keys() == {100, 101, 102}
    assert result[100] == pytest.approx(weight(2, 1, 3), rel=1e-6)
    assert result[101] == pytest.approx(weight(1, 2, 2), rel=1e-6)
    assert result[102] == pytest.approx(weight(3, 2, 4), rel=1e-6)
    # a repeated query term counts twice
    assert dict(index.search(["a", "a"], 1))[100] == pytest.approx(2 * weight(2, 1, 3), rel=1e-6)


def test_ordering_ties_and_misses() -> None:
    docs = [["x"], ["y"], ["x"], ["x", "y"]]
    index = BM25Index.build(np.array([7, 5, 3, 9], dtype=np.int64), docs)
    # docs 7 and 3 are identical: tie broken by ascending id
    assert [i for i, _ in index.search(["x"], 10)] == [3, 7, 9]
    assert [i for i, _ in index.search(["x"], 2)] == [3, 7]
    assert index.search(["unknown"], 5) == []
    assert index.search([], 5) == []
    assert index.search(["x"], 0) == []


def test_empty_corpus_and_empty_documents(tmp_path: Path) -> None:
    empty = BM25Index.build(np.zeros(0, dtype=np.int64), [])
    assert empty.search(["a"], 3) == []
    empty.save(tmp_path)
    assert BM25Index.load(tmp_path).search(["a"], 3) == []
    blank = BM25Index.build(_ids(2), [[], ["a"]])
    assert [i for i, _ in blank.search(["a"], 3)] == [101]


def test_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        BM25Index.build(np.array([1, 2], dtype=np.int32), [["a"], ["b"]])
    with pytest.raises(InvalidInput):
        BM25Index.build(_ids(2), [["a"]])
    with pytest.raises(InvalidInput):
        BM25Index.build(_ids(1), ["not a list"])


@pytest.fixture(scope="module")
def scifact() -> list[dict[str, str]]:
    if not SCIFACT.is_file():
        pytest.skip(f"SciFact corpus not present at {SCIFACT}")
    with open(SCIFACT, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(200), fh, strict=False)]


def test_title_queries_find_their_document(scifact: list[dict[str, str]]) -> None:
    ids = np.array([int(d["_id"]) for d in scifact], dtype=np.int64)
    index = BM25Index.build(ids, [analyze(d["text"]) for d in scifact])  # bodies only
    top1 = sum(
        bool(r) and r[0][0] == int(d["_id"])
        for d in scifact
        if (r := index.search(analyze(d["title"]), 1))
    )
    assert top1 >= 0.8 * len(scifact), f"only {top1}/{len(scifact)} titles find their abstract"


def test_save_load_round_trip_without_pickle(scifact: list[dict[str, str]], tmp_path: Path) -> None:
    ids = np.array([int(d["_id"]) for d in scifact], dtype=np.int64)
    index = BM25Index.build(ids, [analyze(d["title"] + " " + d["text"]) for d in scifact])
    paths = index.save(tmp_path)
    assert {p.name for p in paths} == {MATRIX_FILE, VOCAB_FILE}
    loaded = BM25Index.load(tmp_path)
    for d in scifact[:50]:
        q = analyze(d["title"])
        assert loaded.search(q, 10) == index.search(q, 10)
    assert loaded.stats == index.stats

    # .npz members are plain .npy arrays: numeric dtypes, no object (pickled) payload
    with zipfile.ZipFile(tmp_path / MATRIX_FILE) as zf:
        for name in zf.namelist():
            header = zf.read(name)[:200]
            assert b"'descr': '|O'" not in header
            assert b"\x80\x04" not in zf.read(name)[:2]  # pickle protocol 4 magic
    with np.load(tmp_path / MATRIX_FILE, allow_pickle=False) as npz:
        assert {npz[k].dtype.kind for k in npz.files} <= {"i", "f"}


def test_corrupt_files_are_index_unavailable(tmp_path: Path) -> None:
    BM25Index.build(_ids(2), [["a"], ["b"]]).save(tmp_path)
    (tmp_path / MATRIX_FILE).write_bytes(b"garbage")
    with pytest.raises(IndexUnavailable):
        BM25Index.load(tmp_path)
    with pytest.raises(IndexUnavailable):
        BM25Index.load(tmp_path / "missing")


def test_million_token_corpus_searches_in_milliseconds() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(50_000)]
    # Zipf-like term frequencies, 5,000 documents of 200 terms: one million tokens
    draws = np.minimum(rng.zipf(1.3, size=1_000_000) - 1, len(vocab) - 1)
    docs = [[vocab[j] for j in draws[i : i + 200]] for i in range(0, 1_000_000, 200)]
    t0 = time.perf_counter()
    index = BM25Index.build(_ids(len(docs)), docs)
    build = time.perf_counter() - t0
    queries = [[vocab[j] for j in rng.integers(0, 2000, size=8)] for _ in range(200)]
    queries[0] = ["t0", "t1", "t2"]  # the most frequent terms: longest postings
    t0 = time.perf_counter()
    for q in queries:
        index.search(q, 10)
    per_query = (time.perf_counter() - t0) / len(queries)
    assert build < 10.0
    assert per_query < 0.02, f"{per_query * 1000:.1f} ms per query"
