"""Okapi BM25 over precomputed term weights in a sparse matrix.

Every (term, document) weight is computed once at build time::

    w(t, d) = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)  = ln(1 + (N - df + 0.5) / (df + 0.5))          (Lucene's, never negative)

Like Lucene since 8.0 the constant factor ``(k1 + 1)`` is left out: it scales every score
equally and changes no ranking. The weights are stored term-major (vocab x docs, CSR), so
a query only touches the rows of its own terms: a few thousand floats for a query over a
million-token corpus. Files are ``.npz`` (read with ``allow_pickle=False``) plus JSON.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from qa.errors import IndexUnavailable, InvalidInput

K1 = 1.2
B = 0.75

MATRIX_FILE = "bm25.npz"
VOCAB_FILE = "bm25_vocab.json"
_FORMAT = 1
_NPY_LOAD_LOCK = threading.Lock()


class BM25Index:
    """Immutable BM25 index over documents identified by int64 ids."""

    def __init__(
        self,
        ids: npt.NDArray[np.int64],
        weights: sparse.csr_matrix,
        vocab: list[str],
        avgdl: float,
        *,
        k1: float = K1,
        b: float = B,
    ) -> None:
        self.ids = ids
        self.weights = weights  # vocab x docs, float32
        self.vocab = vocab
        self.term_index = {t: i for i, t in enumerate(vocab)}
        self.avgdl = avgdl
        self.k1 = k1
        self.b = b

    @classmethod
    def build(
        cls,
        ids: npt.NDArray[np.int64],
        term_lists: Sequence[Sequence[str]],
        *,
        k1: float = K1,
        b: float = B,
    ) -> BM25Index:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype != np.int64:
            raise InvalidInput(f"ids must be a 1-D int64 array, got {ids.dtype} {ids.shape}")
        if len(ids) != len(term_lists):
            raise InvalidInput(f"{len(ids)} ids but {len(term_lists)} term lists")
        vocab_index: dict[str, int] = {}
        term_ids: list[int] = []
        lengths = np.empty(len(term_lists), dtype=np.int64)
        for d, terms in enumerate(term_lists):
            if isinstance(terms, str):
                raise InvalidInput("term_lists must hold sequences of terms, not strings")
            lengths[d] = len(terms)
            term_ids.extend(vocab_index.setdefault(t, len(vocab_index)) for t in terms)
        vocab = list(vocab_index)
        n_docs, n_terms = len(term_lists), len(vocab)
        rows = np.asarray(term_ids, dtype=np.int64)
        cols = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        # COO -> CSR sums the duplicate (term, doc) pairs: that is the term frequency.
        tf = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n_terms, n_docs)
        )
        tf.sum_duplicates()
        tf.sort_indices()
        avgdl = float(lengths.mean()) if n_docs else 0.0
        df = np.diff(tf.indptr).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        doc_len = lengths[tf.indices].astype(np.float64)
        norm = k1 * (1.0 - b + b * doc_len / avgdl) if avgdl > 0 else np.full_like(doc_len, k1)
        term_of_entry = np.repeat(np.arange(n_terms), np.diff(tf.indptr))
        data = idf[term_of_entry] * tf.data / (tf.data + norm)
        weights = sparse.csr_matrix(
            (data.astype(np.float32), tf.indices.astype(np.int32), tf.indptr.astype(np.int64)),
            shape=(n_terms, n_docs),
        )
        return cls(ids.copy(), weights, vocab, avgdl, k1=k1, b=b)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "docs": len(self.ids),
            "vocab": len(self.vocab),
            "postings": int(self.weights.nnz),
            "avgdl": self.avgdl,
            "k1": self.k1,
            "b": self.b,
        }

    def document_frequency(self, term: str) -> int:
        """How many documents (chunks) contain ``term``."""
        i = self.term_index.get(term)
        return 0 if i is None else int(self.weights.indptr[i + 1] - self.weights.indptr[i])

    def search(self, query_terms: Iterable[str], k: int) -> list[tuple[int, float]]:
        """Top ``k`` ``(id, score)`` by descending score, ties by ascending id.

        A term repeated in the query counts that many times; unknown terms add nothing.
        Only documents sharing at least one term with the query are returned.
        """
        if k <= 0 or not len(self.ids):
            return []
        counts: dict[int, int] = {}
        for t in query_terms:
            i = self.term_index.get(t)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        if not counts:
            return []
        w = self.weights
        scores = np.zeros(len(self.ids), dtype=np.float64)
        for i, c in counts.items():
            lo, hi = w.indptr[i], w.indptr[i + 1]
            # Column indices are unique within a row, so fancy-index += is exact.
            scores[w.indices[lo:hi]] += c * w.data[lo:hi].astype(np.float64)
        hit = np.flatnonzero(scores > 0)
        if len(hit) > k:
            # Keep every document tied with the k-th score so the id tie-break is exact.
            kth = np.partition(scores[hit], len(hit) - k)[len(hit) - k]
            hit = hit[scores[hit] >= kth]
        order = np.lexsort((self.ids[hit], -scores[hit]))[:k]
        top = hit[order]
        return [(int(i), float(s)) for i, s in zip(self.ids[top], scores[top], strict=True)]

    def save(self, directory: str | Path) -> list[Path]:
        """Write the index files into ``directory``; returns their paths (not fsynced)."""
        directory = Path(directory)
        matrix = directory / MATRIX_FILE
        with open(matrix, "wb") as fh:
            np.savez(
                fh,
                ids=self.ids,
                indptr=self.weights.indptr.astype(np.int64),
                indices=self.weights.indices.astype(np.int32),
                data=self.weights.data.astype(np.float32),
            )
        vocab = directory / VOCAB_FILE
        meta = {"format": _FORMAT, **self.stats, "terms": self.vocab}
        with open(vocab, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, ensure_ascii=False, separators=(",", ":"))
        return [matrix, vocab]

    @staticmethod
    def stored_ids(directory: str | Path) -> npt.NDArray[np.int64]:
        """The chunk ids of the index saved in ``directory``, read without the rest."""
        try:
            with _NPY_LOAD_LOCK, np.load(Path(directory) / MATRIX_FILE, allow_pickle=False) as npz:
                ids: npt.NDArray[np.int64] = npz["ids"]
        except (OSError, ValueError, KeyError) as exc:
            raise IndexUnavailable(f"cannot read BM25 index in {directory}: {exc}") from exc
        return ids

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        directory = Path(directory)
        try:
            with open(directory / VOCAB_FILE, encoding="utf-8") as fh:
                meta = json.load(fh)
            # numpy parses each .npy header with ast.literal_eval; on CPython 3.11 before
            # 3.11.8, parallel ast use in threads can raise "SystemError: AST constructor
            # recursion depth mismatch" (gh-106905), so readers load one at a time.
            with _NPY_LOAD_LOCK, np.load(directory / MATRIX_FILE, allow_pickle=False) as npz:
                ids, indptr = npz["ids"], npz["indptr"]
                indices, data = npz["indices"], npz["data"]
        except (OSError, ValueError, KeyError) as exc:
            raise IndexUnavailable(f"cannot read BM25 index in {directory}: {exc}") from exc
        if meta.get("format") != _FORMAT:
            raise IndexUnavailable(f"unknown BM25 format {meta.get('format')} in {directory}")
        vocab = meta["terms"]
        n_terms, n_docs = len(vocab), len(ids)
        if (
            ids.dtype != np.int64
            or len(indptr) != n_terms + 1
            or len(indices) != len(data)
            or int(indptr[-1]) != len(data)
            or (len(indices) and int(indices.max()) >= n_docs)
        ):
            raise IndexUnavailable(f"BM25 index in {directory} is inconsistent")
        weights = sparse.csr_matrix((data, indices, indptr), shape=(n_terms, n_docs))
        avgdl = float(meta["avgdl"])
        if not math.isfinite(avgdl):
            raise IndexUnavailable(f"BM25 index in {directory} has a bad avgdl")
        return cls(ids, weights, vocab, avgdl, k1=float(meta["k1"]), b=float(meta["b"]))


def files(directory: str | Path) -> list[Path]:
    """The files ``BM25Index.save`` writes into ``directory``."""
    return [Path(directory) / MATRIX_FILE, Path(directory) / VOCAB_FILE]
