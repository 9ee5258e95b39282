"""Published indexes: versions, atomic swap, crash recovery, GC, concurrent readers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from qa.errors import IndexUnavailable, InvalidInput, StorageError
from qa.retrieval import index_store
from qa.retrieval.index_store import CURRENT_FILE, IndexReader, IndexStore

DIM = 16
MODEL = "test-model"


def _corpus(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    terms = [[f"w{i}", f"g{i % 7}", "common"] for i in range(n)]
    return ids, vecs, terms


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    return IndexStore(tmp_path / "indexes", keep=2)


def test_publish_and_search(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(50)
    version = store.publish("c1", ids, vecs, terms, model_id=MODEL)
    idx = IndexReader(store).get("c1", expected_count=50)
    assert idx.version == version
    assert idx.manifest["count"] == 50 and idx.manifest["dim"] == DIM
    assert idx.manifest["model_id"] == MODEL and idx.manifest["kind"] == "flat"
    top = idx.search_dense(vecs[7], 3)
    assert top[0][0] == 1007 and top[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(top) == 3
    assert idx.search_lexical(["w12"], 5)[0][0] == 1012
    assert len(idx.search_lexical(["common"], 100)) == 50
    assert idx.search_dense(vecs[0], 500)[0][0] == 1000  # k above the size is fine
    with pytest.raises(InvalidInput):
        idx.search_dense(np.zeros(DIM + 1, dtype=np.float32), 3)


def test_manifest_lists_checksums(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(5)
    version = store.publish("c1", ids, vecs, terms, model_id=MODEL)
    vdir = store.collection_dir("c1") / "versions" / version
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert set(manifest["files"]) == {"dense.faiss", "bm25.npz", "bm25_vocab.json"}
    assert manifest["bm25"]["docs"] == 5
    assert (store.collection_dir("c1") / CURRENT_FILE).read_text().strip() == version


def test_empty_collection(store: IndexStore) -> None:
    version = store.publish(
        "empty", np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), [], model_id=MODEL
    )
    idx = IndexReader(store).get("empty", expected_count=0)
    assert idx.version == version
    assert idx.search_dense(np.ones(DIM, np.float32), 5) == []
    assert idx.search_lexical(["x"], 5) == []


def test_hnsw_kind(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(300)
    store.publish("h", ids, vecs, terms, model_id=MODEL, kind="hnsw")
    idx = IndexReader(store).get("h")
    assert idx.manifest["kind"] == "hnsw"
    hits = sum(idx.search_dense(vecs[i], 1)[0][0] == ids[i] for i in range(0, 300, 10))
    assert hits >= 28  # approximate, but a vector finds itself


def test_reader_follows_new_versions(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(10)
    store.publish("c", ids, vecs, terms, model_id=MODEL)
    reader = IndexReader(store)
    first = reader.get("c")
    assert reader.get("c") is first  # cached while CURRENT is unchanged

    ids2, vecs2, terms2 = _corpus(12, seed=1)
    v2 = IndexStore(store.root).publish("c", ids2, vecs2, terms2, model_id=MODEL)
    second = reader.get("c", expected_count=12)
    assert second.version == v2 != first.version
    assert second.search_lexical(["w11"], 1)[0][0] == 1011
    # the old object still works for a request that holds it
    assert first.search_lexical(["w3"], 1)[0][0] == 1003


def test_expected_count_mismatch_and_missing(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(10)
    store.publish("c", ids, vecs, terms, model_id=MODEL)
    reader = IndexReader(store)
    with pytest.raises(IndexUnavailable, match="database has 11"):
        reader.get("c", expected_count=11)
    with pytest.raises(IndexUnavailable, match="no index"):
        reader.get("other")


def test_inconsistent_version_is_refused(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(10)
    version = store.publish("c", ids, vecs, terms, model_id=MODEL)
    manifest_path = store.collection_dir("c") / "versions" / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["count"] = 9
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable, match="inconsistent"):
        IndexReader(store).get("c")


def test_crash_between_write_and_swap(store: IndexStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, vecs, terms = _corpus(10)
    v1 = store.publish("c", ids, vecs, terms, model_id=MODEL)
    reader = IndexReader(store)
    reader.get("c")

    def crash(collection_dir: Path, version: str) -> None:
        raise KeyboardInterrupt("simulated crash before CURRENT is swapped")

    monkeypatch.setattr(index_store, "_swap_current", crash)
    ids2, vecs2, terms2 = _corpus(20, seed=2)
    with pytest.raises(KeyboardInterrupt):
        store.publish("c", ids2, vecs2, terms2, model_id=MODEL)
    orphan = store.versions("c")[-1]
    assert orphan != v1
    # a half-written temp dir from another crash
    (store.collection_dir("c") / "versions" / ".tmp-v00000099").mkdir()

    # readers, old and new, still get the previous complete version
    assert reader.get("c", expected_count=10).version == v1
    assert IndexReader(store).get("c", expected_count=10).version == v1

    monkeypatch.undo()
    v3 = store.publish("c", ids2, vecs2, terms2, model_id=MODEL)
    assert reader.get("c", expected_count=20).version == v3
    left = sorted(p.name for p in (store.collection_dir("c") / "versions").iterdir())
    assert left == [v1, v3], "orphan version and temp dir are cleaned up"


def test_gc_keeps_the_newest_versions(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, keep=3)
    ids, vecs, terms = _corpus(5)
    published = [store.publish("c", ids, vecs, terms, model_id=MODEL) for _ in range(6)]
    assert store.versions("c") == published[-3:]
    assert store.current_version("c") == published[-1]


def test_a_publish_without_some_chunks_removes_every_version_holding_them(
    tmp_path: Path,
) -> None:
    store = IndexStore(tmp_path, keep=3)
    ids, vecs, terms = _corpus(6)
    first = store.publish("c", ids[:4], vecs[:4], terms[:4], model_id=MODEL)
    grown = store.publish("c", ids, vecs, terms, model_id=MODEL)
    assert store.versions("c") == [first, grown], "a version that only lacks chunks stays"
    # Chunk ids[0] deleted: no version that still holds it may stay within the keep window.
    shrunk = store.publish("c", ids[1:], vecs[1:], terms[1:], model_id=MODEL)
    assert store.versions("c") == [shrunk]


def test_invalid_inputs(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(4)
    bad_cases = [
        (ids.astype(np.int32), vecs, terms, "flat"),
        (ids, vecs.astype(np.float64), terms, "flat"),
        (np.array([1, 1, 2, 3], np.int64), vecs, terms, "flat"),
        (ids, np.where(np.eye(4, DIM) > 0, np.nan, vecs).astype(np.float32), terms, "flat"),
        (ids[:3], vecs, terms, "flat"),
        (ids, vecs, [*terms[:3], ["two words"]], "flat"),
        (ids, vecs, terms, "ivf"),
    ]
    for bad_ids, bad_vecs, bad_terms, kind in bad_cases:
        with pytest.raises(InvalidInput):
            store.publish("c", bad_ids, bad_vecs, bad_terms, model_id=MODEL, kind=kind)  # type: ignore[arg-type]
    for key in ("", "../x", ".hidden", "a/b", "x" * 200):
        with pytest.raises(InvalidInput):
            store.publish(key, ids, vecs, terms, model_id=MODEL)
    assert store.versions("c") == []


def test_drop(store: IndexStore) -> None:
    ids, vecs, terms = _corpus(5)
    store.publish("c", ids, vecs, terms, model_id=MODEL)
    reader = IndexReader(store)
    reader.get("c")
    store.drop("c")
    assert not store.collection_dir("c").exists()
    with pytest.raises(IndexUnavailable):
        reader.get("c")
    store.drop("c")  # dropping twice is fine
    store.publish("c", ids, vecs, terms, model_id=MODEL)
    assert reader.get("c", expected_count=5).count == 5


def test_storage_errors_are_translated(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ids, vecs, terms = _corpus(3)
    with pytest.raises(StorageError):
        IndexStore(blocker).publish("c", ids, vecs, terms, model_id=MODEL)


def test_concurrent_readers_never_see_a_broken_index(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, keep=1)  # keep=1: old versions vanish as fast as possible
    sizes = [20 + i for i in range(15)]
    corpora = {n: _corpus(n, seed=n) for n in sizes}
    ids, vecs, terms = corpora[sizes[0]]
    store.publish("c", ids, vecs, terms, model_id=MODEL)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[str] = set()

    def read() -> None:
        reader = IndexReader(store)
        while not stop.is_set():
            try:
                idx = reader.get("c")
                n = idx.count
                _, want_vecs, _ = corpora[n]
                assert idx.search_dense(want_vecs[n - 1], 1)[0][0] == 1000 + n - 1
                assert idx.search_lexical([f"w{n - 1}"], 1)[0][0] == 1000 + n - 1
                seen.add(idx.version)
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        writer_store = IndexStore(tmp_path, keep=1)
        for n in sizes[1:]:
            ids, vecs, terms = corpora[n]
            writer_store.publish("c", ids, vecs, terms, model_id=MODEL)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    assert len(seen) > 1


def test_version_collected_while_loading_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = IndexStore(tmp_path, keep=1)
    ids, vecs, terms = _corpus(5)
    store.publish("c", ids, vecs, terms, model_id=MODEL)
    real_load = index_store._load
    calls: list[str] = []

    def load_after_a_publish(key: str, vdir: Path, version: str) -> index_store.PublishedIndex:
        calls.append(version)
        if len(calls) == 1:  # the writer wins the race: `version` is garbage-collected now
            ids2, vecs2, terms2 = _corpus(8, seed=3)
            store.publish("c", ids2, vecs2, terms2, model_id=MODEL)
            assert not vdir.exists()
        return real_load(key, vdir, version)

    monkeypatch.setattr(index_store, "_load", load_after_a_publish)
    idx = IndexReader(store).get("c", expected_count=8)
    assert len(calls) == 2 and idx.version == calls[1] != calls[0]
