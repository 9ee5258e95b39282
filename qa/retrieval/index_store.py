"""Per-collection search indexes (FAISS + BM25) published as immutable versions.

Layout::

    <root>/<collection_key>/.lock                    writers hold flock() on it
    <root>/<collection_key>/CURRENT                  name of the version readers use
    <root>/<collection_key>/versions/<version>/      dense.faiss, bm25.npz, bm25_vocab.json,
                                                     manifest.json (written last)
    <root>/<collection_key>/versions/.tmp-<version>  a version being written

Publishing writes a complete new version under a temporary name, fsyncs every file and the
directory, renames it into place, and only then swaps ``CURRENT`` (write, fsync, rename,
fsync the directory). A crash at any point leaves ``CURRENT`` naming a complete version;
whatever the crash left behind (a ``.tmp-`` dir, a renamed version newer than ``CURRENT``)
is removed by the next publish, which holds the lock and so knows no one else is writing.

Readers never lock: they read ``CURRENT`` on each ``get`` (a few microseconds) and load a
version once, keeping it in memory, so garbage collection of old version dirs cannot break
a reader that already loaded one. The metadata DB stays the source of truth: ``get`` with
``expected_count`` refuses an index that disagrees with it, and the caller reindexes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from qa.errors import IndexUnavailable, InvalidInput, StorageError
from qa.retrieval.bm25 import BM25Index
from qa.retrieval.lexical import ANALYZER_VERSION
from qa.store.fsutil import fsync_path, sha256_file

IndexKind = Literal["flat", "hnsw"]

DENSE_FILE = "dense.faiss"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
FORMAT = 1

# HNSW graph parameters: M=32 links per node is the usual recall/memory balance for
# 384-dim sentence embeddings; efSearch is saved inside the index file.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_RE = re.compile(r"v(\d{8})")
_LOAD_ATTEMPTS = 3


def _check_key(collection_key: str) -> str:
    if not _KEY_RE.fullmatch(collection_key) or ".." in collection_key:
        raise InvalidInput(f"invalid collection key {collection_key!r}")
    return collection_key


def _swap_current(collection_dir: Path, version: str) -> None:
    """Atomically point ``CURRENT`` at ``version``.

    Module-level on purpose: tests monkeypatch it to raise and so simulate a crash between
    writing a version and publishing it.
    """
    tmp = collection_dir / f"{CURRENT_FILE}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, collection_dir / CURRENT_FILE)
    fsync_path(collection_dir)


def _subset_of(version_dir: Path, ids: npt.NDArray[np.int64]) -> bool:
    """Whether every chunk of the version in ``version_dir`` is among ``ids`` (an
    unreadable version counts as not: it is of no use to keep)."""
    try:
        held = BM25Index.stored_ids(version_dir)
    except IndexUnavailable:
        return False
    return bool(np.isin(held, ids).all())


def _version_number(name: str) -> int | None:
    m = _VERSION_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def _read_current(collection_dir: Path) -> str | None:
    try:
        text = (collection_dir / CURRENT_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexUnavailable(f"cannot read {collection_dir / CURRENT_FILE}: {exc}") from exc
    if _version_number(text) is None:
        raise IndexUnavailable(f"{collection_dir / CURRENT_FILE} holds {text!r}, not a version")
    return text


def _validate(
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    term_lists: Sequence[Sequence[str]],
    kind: str,
) -> None:
    if kind not in ("flat", "hnsw"):
        raise InvalidInput(f"index kind must be 'flat' or 'hnsw', got {kind!r}")
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.ndim != 1:
        raise InvalidInput("ids must be a 1-D numpy int64 array")
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
        raise InvalidInput("vectors must be a 2-D numpy float32 array (n, dim)")
    n, dim = vectors.shape
    if dim < 1:
        raise InvalidInput("vectors must have at least one dimension")
    if len(ids) != n or len(term_lists) != n:
        raise InvalidInput(f"{len(ids)} ids, {n} vectors and {len(term_lists)} term lists")
    if n and len(np.unique(ids)) != n:
        raise InvalidInput("chunk ids must be unique")
    if n and not np.isfinite(vectors).all():
        raise InvalidInput("vectors contain NaN or infinity")
    for terms in term_lists:
        if isinstance(terms, str):
            raise InvalidInput("term_lists must hold sequences of terms, not strings")
        for t in terms:
            if not t or any(c.isspace() for c in t):
                raise InvalidInput(f"invalid lexical term {t!r}")


def _build_dense(
    ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], kind: str
) -> faiss.Index:
    dim = vectors.shape[1]
    inner: faiss.Index
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        inner = hnsw
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids))
    return index


@dataclass(frozen=True)
class PublishedIndex:
    """One loaded, immutable version of a collection's indexes. Safe to share by threads."""

    collection_key: str
    version: str
    manifest: dict[str, Any]
    dense: faiss.Index
    lexical: BM25Index

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def analyzer(self) -> int:
        """The ``ANALYZER_VERSION`` of the terms in the BM25 part (1: before it was recorded)."""
        return manifest_analyzer(self.manifest)

    def search_dense(self, query_vec: npt.ArrayLike, k: int) -> list[tuple[int, float]]:
        """Top ``k`` chunk ids by inner product with ``query_vec`` (shape (dim,) or (1, dim))."""
        q = np.asarray(query_vec, dtype=np.float32).reshape(1, -1)
        if q.shape[1] != self.dim:
            raise InvalidInput(f"query has {q.shape[1]} dims, index has {self.dim}")
        if not np.isfinite(q).all():
            raise InvalidInput("query vector contains NaN or infinity")
        if k <= 0 or self.dense.ntotal == 0:
            return []
        scores, ids = self.dense.search(q, min(k, self.dense.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]

    def search_lexical(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        return self.lexical.search(terms, k)


class IndexStore:
    """Writes and removes published indexes under ``root``. One writer per collection."""

    def __init__(self, root: str | Path, *, keep: int = 3) -> None:
        if keep < 1:
            raise InvalidInput("keep must be at least 1")
        self.root = Path(root)
        self.keep = keep

    def collection_dir(self, collection_key: str) -> Path:
        return self.root / _check_key(collection_key)

    @contextlib.contextmanager
    def _locked(self, collection_key: str) -> Iterator[Path]:
        cdir = self.collection_dir(collection_key)
        while True:
            created = not cdir.exists()
            cdir.mkdir(parents=True, exist_ok=True)
            if created:
                fsync_path(cdir.parent)
            fd = os.open(cdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # drop() may have removed the directory while we waited: if the lock file we
                # hold is no longer the one on disk, start again with a fresh one.
                try:
                    same = os.stat(cdir / LOCK_FILE).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    yield cdir
                    return
            finally:
                os.close(fd)  # closing the descriptor releases the lock

    def publish(
        self,
        collection_key: str,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        term_lists: Sequence[Sequence[str]],
        *,
        model_id: str,
        kind: IndexKind = "flat",
        analyzer: int = ANALYZER_VERSION,
    ) -> str:
        """Write a new version of the collection's indexes and make it current; returns it.

        ``analyzer`` is recorded in the manifest: the ``ANALYZER_VERSION`` that made
        ``term_lists``."""
        _check_key(collection_key)
        _validate(ids, vectors, term_lists, kind)
        try:
            with self._locked(collection_key) as cdir:
                versions = cdir / "versions"
                if not versions.exists():
                    versions.mkdir()
                    fsync_path(cdir)
                current = _read_current(cdir)
                self._remove_leftovers(versions, current)
                version = self._next_version(versions, current)
                tmp = versions / f"{TMP_PREFIX}{version}"
                tmp.mkdir()
                self._write_version(
                    tmp, version, ids, vectors, term_lists, model_id, kind, analyzer
                )
                os.rename(tmp, versions / version)
                fsync_path(versions)
                _swap_current(cdir, version)
                self._collect_garbage(versions, version, ids)
                return version
        except OSError as exc:
            raise StorageError(f"publishing index for {collection_key} failed: {exc}") from exc
        except RuntimeError as exc:  # faiss reports its errors as RuntimeError
            raise StorageError(f"faiss failed for {collection_key}: {exc}") from exc

    def _write_version(
        self,
        tmp: Path,
        version: str,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        term_lists: Sequence[Sequence[str]],
        model_id: str,
        kind: str,
        analyzer: int,
    ) -> None:
        dense = _build_dense(ids, vectors, kind)
        faiss.write_index(dense, str(tmp / DENSE_FILE))
        lexical = BM25Index.build(ids, term_lists)
        written = [tmp / DENSE_FILE, *lexical.save(tmp)]
        for path in written:
            fsync_path(path)
        manifest = {
            "format": FORMAT,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "count": len(ids),
            "dim": int(vectors.shape[1]),
            "model_id": model_id,
            "kind": kind,
            "analyzer": analyzer,
            "bm25": lexical.stats,
            "files": {
                p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in written
            },
        }
        with open(tmp / MANIFEST_FILE, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_path(tmp)

    @staticmethod
    def _next_version(versions: Path, current: str | None) -> str:
        numbers = [n for p in versions.iterdir() if (n := _version_number(p.name)) is not None]
        if current is not None:
            numbers.append(_version_number(current) or 0)
        return f"v{max(numbers, default=0) + 1:08d}"

    @staticmethod
    def _remove_leftovers(versions: Path, current: str | None) -> None:
        """Remove what crashed publishes left: temp dirs and versions never made current."""
        current_no = _version_number(current) if current else 0
        for p in versions.iterdir():
            n = _version_number(p.name)
            if p.name.startswith(TMP_PREFIX) or (n is not None and n > (current_no or 0)):
                shutil.rmtree(p, ignore_errors=True)

    def _collect_garbage(
        self, versions: Path, current: str, current_ids: npt.NDArray[np.int64]
    ) -> None:
        """Keep ``current`` and the ``keep - 1`` versions before it; remove older ones, and
        every older one holding a chunk ``current`` does not: deleted means gone at the
        next publish, its vectors and postings included. (Readers lose nothing: they keep
        the version they loaded in memory, and one that finds its version gone reads
        ``CURRENT`` again.)"""
        current_no = _version_number(current) or 0
        older = sorted(
            (n, p)
            for p in versions.iterdir()
            if (n := _version_number(p.name)) is not None and n < current_no
        )
        beyond = max(0, len(older) - (self.keep - 1))
        for i, (_, p) in enumerate(older):
            if i < beyond or not _subset_of(p, current_ids):
                shutil.rmtree(p, ignore_errors=True)

    def versions(self, collection_key: str) -> list[str]:
        """Version dirs present on disk, oldest first (for tests and `docqa` diagnostics)."""
        vdir = self.collection_dir(collection_key) / "versions"
        if not vdir.is_dir():
            return []
        return sorted(p.name for p in vdir.iterdir() if _version_number(p.name) is not None)

    def current_version(self, collection_key: str) -> str | None:
        return _read_current(self.collection_dir(collection_key))

    def current_manifest(self, collection_key: str) -> dict[str, Any] | None:
        """The manifest of the current version; None when nothing readable is published."""
        cdir = self.collection_dir(collection_key)
        try:
            version = _read_current(cdir)
            if version is None:
                return None
            with open(cdir / "versions" / version / MANIFEST_FILE, encoding="utf-8") as fh:
                manifest = json.load(fh)
        except (OSError, ValueError, IndexUnavailable):
            return None  # garbage-collected meanwhile, or unreadable
        return manifest if isinstance(manifest, dict) else None

    @contextlib.contextmanager
    def holding_current(self, collection_key: str) -> Iterator[tuple[str, Path] | None]:
        """The current version and its directory, with publishing held off meanwhile (a
        backup copies it: a publish would otherwise garbage-collect it mid-copy); None
        when nothing is published. Readers are not held up: they never lock."""
        if not self.collection_dir(collection_key).is_dir():
            yield None
            return
        with self._locked(collection_key) as cdir:
            version = _read_current(cdir)
            yield None if version is None else (version, cdir / "versions" / version)

    def drop(self, collection_key: str) -> None:
        """Remove every index of the collection. Readers see ``IndexUnavailable`` next."""
        cdir = self.collection_dir(collection_key)
        if not cdir.exists():
            return
        try:
            with self._locked(collection_key) as cdir:
                # Rename first so that no reader ever sees a half-deleted version.
                trash = self.root / f"{TMP_PREFIX}drop-{collection_key}-{uuid.uuid4().hex}"
                os.rename(cdir, trash)
                fsync_path(self.root)
            shutil.rmtree(trash, ignore_errors=True)
        except OSError as exc:
            raise StorageError(f"dropping index of {collection_key} failed: {exc}") from exc


class IndexReader:
    """Loads published indexes on demand and follows ``CURRENT``. Shared by many threads."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self._cache: dict[str, PublishedIndex] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    def get(self, collection_key: str, expected_count: int | None = None) -> PublishedIndex:
        """The current index of the collection; reloads when a new version was published.

        Raises ``IndexUnavailable`` when nothing is published or when the published index
        does not hold ``expected_count`` chunks (the DB says otherwise: reindex).
        """
        cdir = self.store.collection_dir(collection_key)
        index = self._current(collection_key, cdir)
        if expected_count is not None and expected_count != index.count:
            raise IndexUnavailable(
                f"index of {collection_key} ({index.version}) holds {index.count} chunks but "
                f"the database has {expected_count}; it needs a reindex"
            )
        return index

    def _current(self, key: str, cdir: Path) -> PublishedIndex:
        for _ in range(_LOAD_ATTEMPTS):
            version = _read_current(cdir)
            if version is None:
                with self._lock:
                    self._cache.pop(key, None)
                raise IndexUnavailable(f"no index published for collection {key}")
            cached = self._cache.get(key)
            if cached is not None and cached.version == version:
                return cached
            with self._lock:
                load_lock = self._load_locks.setdefault(key, threading.Lock())
            with load_lock:
                cached = self._cache.get(key)
                if cached is not None and cached.version == version:
                    return cached
                try:
                    index = _load(key, cdir / "versions" / version, version)
                except (OSError, IndexUnavailable) as exc:
                    # A version garbage-collected between reading CURRENT and opening its
                    # files means a newer one is current: read CURRENT again. Anything
                    # else wrong with the version that is still current is an error.
                    if _read_current(cdir) != version:
                        continue
                    if isinstance(exc, IndexUnavailable):
                        raise
                    raise IndexUnavailable(f"cannot load index {key}/{version}: {exc}") from exc
                with self._lock:
                    self._cache[key] = index
                return index
        raise IndexUnavailable(f"index of collection {key} keeps changing or is incomplete")

    def evict(self, collection_key: str) -> None:
        with self._lock:
            self._cache.pop(collection_key, None)


def manifest_analyzer(manifest: dict[str, Any]) -> int:
    """The analyzer version a manifest records; versions written before it was recorded
    are 1 (jieba on the text as written)."""
    value = manifest.get("analyzer", 1)
    return value if isinstance(value, int) else 1


def _load(key: str, vdir: Path, version: str) -> PublishedIndex:
    """Load and cross-check one version. Missing files raise FileNotFoundError."""
    with open(vdir / MANIFEST_FILE, encoding="utf-8") as fh:
        manifest = json.load(fh)
    for name, meta in manifest.get("files", {}).items():
        size = (vdir / name).stat().st_size  # FileNotFoundError if it vanished
        if size != meta["bytes"]:
            raise IndexUnavailable(f"{vdir / name} has {size} bytes, manifest says {meta['bytes']}")
    dense_path = vdir / DENSE_FILE
    if not dense_path.exists():
        raise FileNotFoundError(dense_path)
    try:
        dense = faiss.read_index(str(dense_path))
    except RuntimeError as exc:
        raise IndexUnavailable(f"cannot read {dense_path}: {exc}") from exc
    lexical = BM25Index.load(vdir)
    count = int(manifest["count"])
    if manifest.get("version") != version:
        raise IndexUnavailable(f"{vdir} holds manifest of {manifest.get('version')}")
    if dense.ntotal != count or len(lexical) != count or dense.d != int(manifest["dim"]):
        raise IndexUnavailable(
            f"index {key}/{version} is inconsistent: manifest {count} chunks, "
            f"faiss {dense.ntotal}, bm25 {len(lexical)}"
        )
    if not math.isfinite(lexical.avgdl):
        raise IndexUnavailable(f"index {key}/{version} has a corrupt BM25 part")
    return PublishedIndex(key, version, manifest, dense, lexical)


__all__ = [
    "IndexKind",
    "IndexReader",
    "IndexStore",
    "PublishedIndex",
    "manifest_analyzer",
]
