"""``docqa eval retrieval``: retrieval quality and latency on a BEIR-layout folder.

    DIR/corpus.jsonl       {"_id", "title", "text"} per line
    DIR/queries.jsonl      {"_id", "text"} per line
    DIR/qrels/<split>.tsv  query-id, corpus-id, score (with a header line)

The corpus goes through the same pieces as an ingest (the chunker sized by the settings,
the lexical analyzer, the configured embedder, the catalog writes, ``publish_collection``),
one document per BEIR document, into a private SQLite DB under
``<data_dir>/eval/<dataset>-<key>/``; the product's own DB is never touched. The key covers
the dataset file, the model, the backend and the chunking, so a rerun with the same
inputs reuses the built index and only runs the queries.

Every query goes through the one ``Retriever`` class in each mode (dense, BM25, hybrid),
twice:

* with the product's defaults (candidate lists of 50, fusion, dedup): nDCG@10, Recall@10,
  MRR@10 and the latency percentiles are what a user would get;
* with deep candidate lists (``pool``, 300 by default): Recall@100 needs 100 distinct
  documents and a document may be several chunks.

A document's rank is the rank of its best chunk (max over chunks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.document import Page
from ingest.pipeline import chunk_rows
from qa.errors import InvalidInput
from qa.retrieval.embedder import Embedder, get_embedder
from qa.retrieval.index_store import IndexReader, IndexStore
from qa.retrieval.ir_metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k, unique_in_order
from qa.retrieval.lexical import ANALYZER_VERSION
from qa.retrieval.publish import publish_collection
from qa.retrieval.retriever import MODES, Mode, Retriever
from qa.settings import Settings
from qa.store.catalog import (
    ChunkRow,
    PageContent,
    ensure_collection,
    get_collection,
    new_document_id,
    replace_document_content,
)
from qa.store.db.engine import Database
from qa.store.db.models import DocStatus, Document

log = logging.getLogger(__name__)

#: bump when the layout of a built eval index changes, so old caches are not reused
_FORMAT = 1
EVAL_COLLECTION = "eval"
_MARKER = "built.json"
_DOC_BATCH = 256
#: passages asked of the product-config retriever: enough for 10 distinct documents when
#: a document's chunks crowd the top
_TOP_PASSAGES = 30

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirQueries:
    texts: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class ModeScores:
    mode: Mode
    ndcg_at_10: float
    recall_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    split: str
    queries: int
    documents: int
    chunks: int
    model_id: str
    backend: str
    index_dir: Path
    index_cached: bool
    index_seconds: float
    scores: tuple[ModeScores, ...]

    def by_mode(self, mode: Mode) -> ModeScores:
        return next(s for s in self.scores if s.mode == mode)


# -- reading a BEIR folder -------------------------------------------------------------------


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    if not path.is_file():
        raise InvalidInput(f"{path} is missing (not a BEIR-layout folder?)")
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{n}: not JSON: {exc}") from exc
            if not isinstance(obj, dict) or "_id" not in obj:
                raise InvalidInput(f"{path}:{n}: expected an object with an _id")
            yield obj


def iter_corpus(beir_dir: Path) -> Iterator[BeirDoc]:
    for obj in _jsonl(beir_dir / "corpus.jsonl"):
        yield BeirDoc(str(obj["_id"]), str(obj.get("title") or ""), str(obj.get("text") or ""))


def load_queries(beir_dir: Path, split: str) -> BeirQueries:
    """Queries that have at least one relevant document in the split's qrels."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise InvalidInput(f"invalid split name {split!r}")
    qrels_path = beir_dir / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise InvalidInput(f"{qrels_path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if (n == 1 and parts[0] == "query-id") or not line.strip():
                continue
            if len(parts) != 3:
                raise InvalidInput(f"{qrels_path}:{n}: expected 3 tab-separated columns")
            try:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
            except ValueError as exc:
                raise InvalidInput(f"{qrels_path}:{n}: score is not an integer") from exc
    texts = {
        str(q["_id"]): str(q.get("text") or "")
        for q in _jsonl(beir_dir / "queries.jsonl")
        if str(q["_id"]) in qrels
    }
    judged = {
        qid: rels
        for qid, rels in qrels.items()
        if qid in texts and texts[qid].strip() and any(r > 0 for r in rels.values())
    }
    return BeirQueries({qid: texts[qid] for qid in judged}, judged)


# -- building (or reusing) the eval index ---------------------------------------------------


@dataclass(frozen=True)
class BuiltIndex:
    folder: Path
    documents: int
    chunks: int
    seconds: float
    cached: bool

    @property
    def db_url(self) -> str:
        return f"sqlite:///{(self.folder / 'eval.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.folder / "indexes"


def _backend_name(embedder: Embedder) -> str:
    return str(getattr(embedder, "backend", type(embedder).__name__))


def file_digest(path: Path) -> str:
    """The sha256 of a file's content: a copy of the same data set elsewhere (every CI
    clone gets one) reuses the index built from it."""
    content = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            content.update(block)
    return content.hexdigest()


def eval_folder(settings: Settings, name: str, digest: str, embedder: Embedder) -> Path:
    """Where the eval index of a data set (by name and content digest) lives:
    ``<data_dir>/eval/<name>-<key>``, the key covering the content, the model, the backend
    and the chunking."""
    key = json.dumps(
        [
            _FORMAT,
            ANALYZER_VERSION,  # the BM25 terms are built into the cached DB and index
            digest,
            embedder.model_id,
            embedder.dim,
            _backend_name(embedder),
            settings.chunk_tokens,
            settings.chunk_overlap,
            settings.index_kind,
        ]
    )
    hashed = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "data"
    return settings.data_dir / "eval" / f"{name}-{hashed}"


def _cache_folder(beir_dir: Path, embedder: Embedder, settings: Settings) -> Path:
    digest = file_digest((beir_dir / "corpus.jsonl").resolve())
    return eval_folder(settings, beir_dir.resolve().name or "beir", digest, embedder)


def _build_index(
    beir_dir: Path,
    embedder: Embedder,
    settings: Settings,
    progress: ProgressFn | None,
) -> BuiltIndex:
    target = _cache_folder(beir_dir, embedder, settings)
    return build_eval_index(
        target, lambda: iter_corpus(beir_dir), embedder, settings, progress, source=beir_dir
    )


def build_eval_index(
    target: Path,
    docs: Callable[[], Iterable[BeirDoc]],
    embedder: Embedder,
    settings: Settings,
    progress: ProgressFn | None,
    *,
    source: Path,
) -> BuiltIndex:
    """Build the one-collection eval DB and index of ``docs`` in ``target``, or reuse it.

    ``docs`` is called twice (to count, then to write). The collection is named
    ``EVAL_COLLECTION``; each document's ``original_name`` is its ``BeirDoc.id``.
    """
    marker = target / _MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text(encoding="utf-8"))
        return BuiltIndex(target, meta["documents"], meta["chunks"], meta["seconds"], True)

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed into place, so an interrupted build is
    # never mistaken for a finished one.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        db = Database(f"sqlite:///{(staging / 'eval.db').resolve()}")
        try:
            documents, chunks = _write_corpus(docs, db, embedder, settings, progress)
            with db.session() as session:
                coll_id = ensure_collection(session, EVAL_COLLECTION).id
            if progress:
                progress("publishing index", 0, 1)
            publish_collection(
                db,
                IndexStore(staging / "indexes"),
                coll_id,
                model_id=embedder.model_id,
                dim=embedder.dim,
                kind=settings.index_kind,
            )
        finally:
            db.dispose()
        seconds = time.perf_counter() - started
        meta = {
            "documents": documents,
            "chunks": chunks,
            "seconds": round(seconds, 1),
            "dataset": str(source.resolve()),
            "model_id": embedder.model_id,
            "backend": _backend_name(embedder),
        }
        (staging / _MARKER).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _MARKER).is_file():  # not "another run finished first"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuiltIndex(target, documents, chunks, seconds, False)


def _write_corpus(
    docs: Callable[[], Iterable[BeirDoc]],
    db: Database,
    embedder: Embedder,
    settings: Settings,
    progress: ProgressFn | None,
) -> tuple[int, int]:
    total = sum(1 for _ in docs())
    with db.session() as session:
        coll_id = ensure_collection(session, EVAL_COLLECTION).id
        session.commit()
    documents = chunks = 0
    batch: list[tuple[BeirDoc, str, list[ChunkRow]]] = []

    def flush() -> None:
        nonlocal documents, chunks
        texts = [row.text for _, _, rows in batch for row in rows]
        vectors = embedder.embed_passages(texts)
        at = 0
        with db.session() as session:
            for doc, text, rows in batch:
                sha = hashlib.sha256(f"{doc.id}\0{text}".encode()).hexdigest()
                row = Document(
                    id=new_document_id(),
                    collection_id=coll_id,
                    sha256=sha,
                    original_name=doc.id,  # maps a hit back to the BEIR id
                    detected_type="text",
                    size_bytes=len(text.encode()),
                    status=DocStatus.INDEXED,
                    title=doc.title[:1024] or None,
                )
                session.add(row)
                pages = [PageContent(1, text)]
                vecs = vectors[at : at + len(rows)]
                replace_document_content(session, row, pages, rows, vecs, embedder.model_id)
                at += len(rows)
            session.commit()
        documents += len(batch)
        chunks += len(texts)
        batch.clear()
        if progress:
            progress("embedding corpus", documents, total)

    for doc in docs():
        # The title leads the text, as a heading would in a real document.
        text = f"{doc.title}\n\n{doc.text}".strip() if doc.title else doc.text.strip()
        if not text:
            continue
        rows = chunk_rows([Page(1, text)], embedder, settings)
        if rows:
            batch.append((doc, text, rows))
        if len(batch) >= _DOC_BATCH:
            flush()
    if batch:
        flush()
    return documents, chunks


# -- running the queries ---------------------------------------------------------------------


def evaluate_retrieval(
    beir_dir: Path,
    *,
    settings: Settings,
    split: str = "test",
    limit_queries: int | None = None,
    backend: str | None = None,
    embedder: Embedder | None = None,
    pool: int = 300,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Build (or reuse) the eval index of ``beir_dir`` and score dense, BM25 and hybrid.

    ``backend`` overrides ``settings.embed_backend`` ("torch" or "onnx-int8"); ``embedder``
    (tests) overrides both. ``pool`` is the candidate depth of the Recall@100 run.
    """
    beir_dir = Path(beir_dir)
    if limit_queries is not None and limit_queries < 1:
        raise InvalidInput("limit_queries must be at least 1")
    if pool < 100:
        raise InvalidInput("pool must be at least 100 (Recall@100 needs 100 documents)")
    if embedder is None:
        if backend is not None:
            settings = settings.model_copy(update={"embed_backend": backend})
        embedder = get_embedder(settings)
    queries = load_queries(beir_dir, split)
    qids = sorted(queries.texts)[:limit_queries]
    if not qids:
        raise InvalidInput(f"no judged queries in {beir_dir} for split {split!r}")

    built = _build_index(beir_dir, embedder, settings, progress)
    db = Database(built.db_url)
    try:
        with db.session() as session:
            coll_id = get_collection(session, EVAL_COLLECTION).id
        reader = IndexReader(IndexStore(built.index_dir))
        product = Retriever(db, reader, embedder)
        deep = Retriever(db, reader, embedder, k_dense=pool, k_lexical=pool)
        scores = []
        for mode in MODES:
            scores.append(_score_mode(mode, qids, queries, product, deep, coll_id, pool, progress))
    finally:
        db.dispose()
    return EvalReport(
        dataset=str(beir_dir),
        split=split,
        queries=len(qids),
        documents=built.documents,
        chunks=built.chunks,
        model_id=embedder.model_id,
        backend=_backend_name(embedder),
        index_dir=built.folder,
        index_cached=built.cached,
        index_seconds=built.seconds,
        scores=tuple(scores),
    )


def _score_mode(
    mode: Mode,
    qids: list[str],
    queries: BeirQueries,
    product: Retriever,
    deep: Retriever,
    coll_id: int,
    pool: int,
    progress: ProgressFn | None,
) -> ModeScores:
    ndcg, r10, r100, mrr, latency = [], [], [], [], []
    for i, qid in enumerate(qids):
        question, rels = queries.texts[qid], queries.qrels[qid]
        top = product.retrieve(question, [coll_id], k=_TOP_PASSAGES, mode=mode)
        latency.append(top.timings.total_ms)
        ranked = unique_in_order(p.document_name for p in top.passages)
        ndcg.append(ndcg_at_k(ranked, rels, 10))
        r10.append(recall_at_k(ranked, rels, 10))
        mrr.append(mrr_at_k(ranked, rels, 10))
        wide = deep.retrieve(question, [coll_id], k=pool, mode=mode)
        r100.append(recall_at_k(unique_in_order(p.document_name for p in wide.passages), rels, 100))
        if progress and (i + 1) % 25 == 0:
            progress(f"queries ({mode})", i + 1, len(qids))
    if progress:
        progress(f"queries ({mode})", len(qids), len(qids))
    n = len(qids)
    return ModeScores(
        mode=mode,
        ndcg_at_10=sum(ndcg) / n,
        recall_at_10=sum(r10) / n,
        recall_at_100=sum(r100) / n,
        mrr_at_10=sum(mrr) / n,
        latency_p50_ms=percentile(latency, 50),
        latency_p95_ms=percentile(latency, 95),
    )


__all__ = [
    "EVAL_COLLECTION",
    "BeirDoc",
    "BeirQueries",
    "BuiltIndex",
    "EvalReport",
    "ModeScores",
    "build_eval_index",
    "eval_folder",
    "evaluate_retrieval",
    "file_digest",
    "iter_corpus",
    "load_queries",
]
