"""Hybrid retrieval over the collections a caller may read.

    question ─┬─ embed ─> FAISS top-k_dense  ┐  per allowed collection
              └─ analyze ─> BM25 top-k_lexical┘
    ─> hydrate every hit from the metadata DB, dropping ids the DB no longer has (deleted
       after the index was published) or that belong to another collection
    ─> one dense and one lexical ranking across collections ─> reciprocal rank fusion
    ─> near-duplicates dropped ─> optional cross-encoder rerank ─> top k passages

Access control lives here, not in the caller's post-filtering: only the indexes of the
allowed collections are opened, and hydration checks each row's collection again, so a
chunk of another collection is never scored, counted or returned.

Per-collection hits are merged by score before fusion. Cosine scores of one embedding model
are on one scale across indexes, so the merged dense list is exactly what one index over
all allowed collections would return. BM25 scores use per-collection statistics (idf,
average length) and are only approximately comparable, the usual trade-off of sharded
search engines; it is what lets each collection keep its own index, the simplest sound
form of access control.

In hybrid mode a question in a language the embedding model was not trained on (a Chinese
question with the packaged English MiniLM) is ranked by BM25 alone; see ``qa.retrieval.language``
for the measurements behind that.

Index problems are per collection. A collection whose index is missing, unreadable or
built with another embedding model is skipped and reported in ``unavailable``: one broken
collection should not take answers from all the others away. Only when every collection
that has chunks is unavailable does ``retrieve`` raise ``IndexUnavailable``, because an
empty answer would read as "your documents do not say". An index whose chunk count
disagrees with the DB (documents added or deleted since the last publish) is still served,
since hydration removes whatever was deleted, and is reported in ``stale`` so the caller
can ask the one index writer to republish.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection as AbstractSet
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import func, select

from qa.errors import IndexUnavailable, InvalidInput
from qa.messages import N_
from qa.retrieval.embedder import Embedder
from qa.retrieval.fusion import DEFAULT_RRF_K, drop_near_duplicates, reciprocal_rank_fusion
from qa.retrieval.index_store import IndexReader, PublishedIndex
from qa.retrieval.language import embedding_languages, question_language
from qa.retrieval.lexical import bm25_terms, han_bigrams, question_terms
from qa.retrieval.reranker import Reranker
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Collection, Document

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")

#: Questions are cut here before analysis and embedding. The embedder reads at most its
#: max_seq_length tokens anyway; the cap keeps a pasted document from costing BM25 one
#: posting-list walk per distinct word.
DEFAULT_MAX_QUERY_CHARS = 2000


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: str
    document_name: str
    document_title: str | None
    collection_id: int
    collection_name: str
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    heading_path: tuple[str, ...]
    #: fused RRF score, or the cross-encoder's score when a reranker is configured
    score: float
    #: 1-based rank in the merged dense / lexical list; None when that list missed it
    dense_rank: int | None
    lexical_rank: int | None
    #: cosine similarity of the chunk to the question; None when the dense list missed it
    #: (or dense ranking sat out): unlike the fused score it is on one scale across questions
    dense_score: float | None = None


@dataclass(frozen=True)
class RetrievalTimings:
    #: embedding the question and analyzing it into BM25 terms
    embed_ms: float = 0.0
    search_ms: float = 0.0
    hydrate_ms: float = 0.0
    rerank_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class RetrievalResult:
    passages: list[Passage]
    timings: RetrievalTimings
    #: collections whose index was searched
    searched: tuple[int, ...] = ()
    #: searched, but the index disagrees with the DB's chunk count: republish it
    stale: tuple[int, ...] = ()
    #: skipped collections and why (missing index, other embedding model, ...)
    unavailable: Mapping[int, str] = field(default_factory=dict)
    duplicates_dropped: int = 0
    #: the question's language ("en"/"zh") and whether the dense ranking took part
    language: str = "en"
    dense_used: bool = True
    #: idf of each distinct question term over the searched collections (chunks as
    #: documents); a term no chunk contains gets the idf of a term seen once. What the
    #: answer side weighs the question's terms with when it judges support.
    term_idf: Mapping[str, float] = field(default_factory=dict)
    #: the question's terms that no searched chunk contains (a Chinese word longer than two
    #: characters counts as contained when all its character bigrams are: jieba may cut
    #: the document differently). The documents do not talk about these.
    absent_terms: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Row:
    """A hydrated chunk: what the DB says about one index hit."""

    chunk_id: int
    collection_id: int
    document_id: str
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    heading_path: tuple[str, ...]
    terms: tuple[str, ...]
    document_name: str
    document_title: str | None
    collection_name: str


class Retriever:
    """Thread-safe: holds no per-request state; the reader and embedder are shared."""

    def __init__(
        self,
        db: Database,
        reader: IndexReader,
        embedder: Embedder,
        *,
        k_dense: int = 50,
        k_lexical: int = 50,
        rrf_k: int = DEFAULT_RRF_K,
        dedup_threshold: float = 0.9,
        reranker: Reranker | None = None,
        rerank_depth: int = 20,
        max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
        dense_languages: AbstractSet[str] | None = None,
    ) -> None:
        """``dense_languages``: question languages for which hybrid mode uses the dense
        ranking; None means what ``qa.retrieval.language.embedding_languages`` knows about the
        embedder's model (all languages for a model it does not know)."""
        if k_dense < 1 or k_lexical < 1:
            raise InvalidInput("k_dense and k_lexical must be at least 1")
        if rrf_k < 0:
            raise InvalidInput("rrf_k must be >= 0")
        if dedup_threshold <= 0:
            raise InvalidInput("dedup_threshold must be > 0 (above 1 disables dedup)")
        if rerank_depth < 1 or max_query_chars < 1:
            raise InvalidInput("rerank_depth and max_query_chars must be at least 1")
        self.db = db
        self.reader = reader
        self.embedder = embedder
        self.k_dense = k_dense
        self.k_lexical = k_lexical
        self.rrf_k = rrf_k
        self.dedup_threshold = dedup_threshold
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.max_query_chars = max_query_chars
        self.dense_languages = (
            frozenset(dense_languages)
            if dense_languages is not None
            else embedding_languages(embedder.model_id)
        )

    def retrieve(
        self,
        question: str,
        collection_ids: Sequence[int],
        k: int = 8,
        *,
        mode: Mode = "hybrid",
    ) -> RetrievalResult:
        """The ``k`` best passages for ``question`` from ``collection_ids`` only.

        ``mode`` selects dense-only or BM25-only ranking (for evaluation); answers use
        ``hybrid``. Raises ``InvalidInput`` for an empty question or bad arguments and
        ``IndexUnavailable`` when no allowed collection with chunks has a usable index.
        """
        started = time.perf_counter()
        query = self._clean_question(question)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInput(f"k must be a positive integer, got {k!r}")
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        allowed = _collection_ids(collection_ids)
        if not allowed:
            return RetrievalResult([], RetrievalTimings(total_ms=_ms(started)))

        indexes, stale, unavailable = self._open_indexes(allowed)
        language = question_language(query)
        # Hybrid leaves the dense ranking out for a language the model was not trained on:
        # fused in, its near-random order only pushes BM25's good hits down (qa.retrieval.language).
        use_dense = mode == "dense" or (
            mode == "hybrid" and (self.dense_languages is None or language in self.dense_languages)
        )

        t = time.perf_counter()
        query_vec = self.embedder.embed_query(query) if use_dense and indexes else None
        about = question_terms(query)
        terms = bm25_terms(query) if mode != "dense" else []
        embed_ms = _ms(t)

        t = time.perf_counter()
        dense_hits: list[tuple[int, int, float]] = []  # (collection, chunk, score)
        lexical_hits: list[tuple[int, int, float]] = []
        for cid, index in indexes:
            if query_vec is not None:
                dense_hits += [(cid, i, s) for i, s in index.search_dense(query_vec, self.k_dense)]
            if terms:
                lexical_hits += [
                    (cid, i, s) for i, s in index.search_lexical(terms, self.k_lexical)
                ]
        search_ms = _ms(t)

        t = time.perf_counter()
        rows = self._hydrate(allowed, {i for _, i, _ in dense_hits + lexical_hits})
        dense = _merge(dense_hits, rows, self.k_dense)
        lexical = _merge(lexical_hits, rows, self.k_lexical)
        hydrate_ms = _ms(t)

        fused = reciprocal_rank_fusion([dense, lexical], self.rrf_k)
        depth = max(k, self.rerank_depth) if self.reranker else k
        kept, dropped = drop_near_duplicates(
            fused, lambda hit: rows[hit[0]].terms, threshold=self.dedup_threshold, limit=depth
        )

        t = time.perf_counter()
        ranked = self._rerank(query, kept, rows)[:k]
        rerank_ms = _ms(t)

        dense_rank = {chunk: r for r, chunk in enumerate(dense, start=1)}
        lexical_rank = {chunk: r for r, chunk in enumerate(lexical, start=1)}
        cosine = {chunk: score for _, chunk, score in dense_hits}
        passages = [
            _passage(
                rows[chunk],
                score,
                dense_rank.get(chunk),
                lexical_rank.get(chunk),
                cosine.get(chunk) if chunk in dense_rank else None,
            )
            for chunk, score in ranked
        ]
        timings = RetrievalTimings(embed_ms, search_ms, hydrate_ms, rerank_ms, _ms(started))
        log.info(
            "retrieval %s (%s%s): %d passages from %d/%d collections in %.1f ms "
            "(embed %.1f, search %.1f, hydrate %.1f, rerank %.1f)%s",
            mode,
            language,
            "" if use_dense else ", no dense",
            len(passages),
            len(indexes),
            len(allowed),
            timings.total_ms,
            embed_ms,
            search_ms,
            hydrate_ms,
            rerank_ms,
            f"; stale {list(stale)}" if stale else "",
        )
        term_idf, absent_terms = _term_weights(about, [index for _, index in indexes])
        return RetrievalResult(
            passages,
            timings,
            searched=tuple(cid for cid, _ in indexes),
            stale=stale,
            unavailable=unavailable,
            duplicates_dropped=dropped,
            language=language,
            dense_used=use_dense,
            term_idf=term_idf,
            absent_terms=absent_terms,
        )

    # -- steps -----------------------------------------------------------------------------

    def _clean_question(self, question: str) -> str:
        if not isinstance(question, str):
            raise InvalidInput(N_("the question must be text"))
        query = question.strip()
        if not query:
            raise InvalidInput(N_("the question is empty"))
        if len(query) > self.max_query_chars:
            log.debug("question of %d chars cut to %d", len(query), self.max_query_chars)
            query = query[: self.max_query_chars]
        return query

    def _open_indexes(
        self, allowed: list[int]
    ) -> tuple[list[tuple[int, PublishedIndex]], tuple[int, ...], dict[int, str]]:
        """``(searchable, stale, unavailable)`` for the allowed collections that exist."""
        with self.db.session() as session:
            keys = {
                c.id: c.index_key
                for c in session.scalars(select(Collection).where(Collection.id.in_(allowed)))
            }
            counts: dict[int, int] = dict(
                session.execute(
                    select(Chunk.collection_id, func.count())
                    .where(Chunk.collection_id.in_(allowed))
                    .group_by(Chunk.collection_id)
                ).all()
            )
        searchable: list[tuple[int, PublishedIndex]] = []
        stale: list[int] = []
        unavailable: dict[int, str] = {}
        for cid, key in sorted(keys.items()):
            expected = counts.get(cid, 0)
            if expected == 0:
                continue  # nothing to find; an empty collection may have no index at all
            try:
                index = self.reader.get(key)
            except IndexUnavailable as exc:
                unavailable[cid] = str(exc)
                continue
            model = index.manifest.get("model_id")
            if model != self.embedder.model_id or index.dim != self.embedder.dim:
                unavailable[cid] = (
                    f"index of {key} was built with {model} ({index.dim} dims) but questions "
                    f"are embedded with {self.embedder.model_id} ({self.embedder.dim} dims); "
                    "re-ingest the collection with the configured model"
                )
                continue
            if index.count != expected:
                stale.append(cid)
            searchable.append((cid, index))
        for cid, reason in unavailable.items():
            log.warning("collection %d skipped in retrieval: %s", cid, reason)
        if unavailable and not searchable:
            raise IndexUnavailable("; ".join(unavailable.values()))
        return searchable, tuple(stale), unavailable

    def _hydrate(self, allowed: list[int], chunk_ids: set[int]) -> dict[int, _Row]:
        if not chunk_ids:
            return {}
        with self.db.session() as session:
            result = session.execute(
                select(
                    Chunk.id,
                    Chunk.collection_id,
                    Chunk.document_id,
                    Chunk.text,
                    Chunk.page_start,
                    Chunk.page_end,
                    Chunk.char_start,
                    Chunk.char_end,
                    Chunk.heading_path,
                    Chunk.terms,
                    Document.original_name,
                    Document.title,
                    Collection.name,
                )
                .join(Document, Document.id == Chunk.document_id)
                .join(Collection, Collection.id == Chunk.collection_id)
                .where(Chunk.id.in_(sorted(chunk_ids)), Chunk.collection_id.in_(allowed))
            ).all()
        return {r[0]: _row(r) for r in result}

    def _rerank(
        self, query: str, fused: list[tuple[int, float]], rows: Mapping[int, _Row]
    ) -> list[tuple[int, float]]:
        if self.reranker is None or not fused:
            return fused
        scores = self.reranker.score(query, [rows[chunk].text for chunk, _ in fused])
        # Fusion order breaks ties, so equal cross-encoder scores keep the fused ranking.
        order = sorted(range(len(fused)), key=lambda i: (-scores[i], i))
        return [(fused[i][0], scores[i]) for i in order]


def _collection_ids(collection_ids: Sequence[int]) -> list[int]:
    if isinstance(collection_ids, (str, bytes)):
        raise InvalidInput(N_("collection_ids must be a sequence of integer ids"))
    ids: set[int] = set()
    for cid in collection_ids:
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise InvalidInput(N_("collection ids are integers, got %(value)s", value=repr(cid)))
        ids.add(cid)
    return sorted(ids)


def _merge(hits: list[tuple[int, int, float]], rows: Mapping[int, _Row], limit: int) -> list[int]:
    """One ranking across collections: hits the DB still has, in their own collection.

    Filtering happens before ranks are assigned, so a deleted chunk does not hold a rank
    and push live ones down.
    """
    live = [
        (score, chunk)
        for coll, chunk, score in hits
        if (row := rows.get(chunk)) is not None and row.collection_id == coll
    ]
    live.sort(key=lambda sc: (-sc[0], sc[1]))
    return [chunk for _, chunk in live[:limit]]


def _row(r: Any) -> _Row:
    return _Row(
        chunk_id=int(r[0]),
        collection_id=int(r[1]),
        document_id=r[2],
        text=r[3],
        page_start=r[4],
        page_end=r[5],
        char_start=r[6],
        char_end=r[7],
        heading_path=tuple(r[8] or ()),
        terms=tuple(r[9].split()),
        document_name=r[10],
        document_title=r[11],
        collection_name=r[12],
    )


def _term_weights(
    terms: Sequence[str], indexes: Sequence[PublishedIndex]
) -> tuple[dict[str, float], frozenset[str]]:
    """BM25's idf of each distinct term, with the searched collections pooled, and the
    terms no chunk contains (see ``RetrievalResult.absent_terms``)."""
    n = sum(len(index.lexical) for index in indexes)
    idf: dict[str, float] = {}
    absent: set[str] = set()
    for term in dict.fromkeys(terms):
        df = _document_frequency(term, indexes)
        if not df and indexes and not _bigrams_indexed(term, indexes):
            absent.add(term)
        # Never seen: counted as seen once, so the weight stays finite and comparable.
        df = max(df, 1)
        idf[term] = math.log1p(max(n - df + 0.5, 0.5) / (df + 0.5))
    return idf, frozenset(absent)


def _bigrams_indexed(term: str, indexes: Sequence[PublishedIndex]) -> bool:
    """A Chinese word longer than two characters whose every character bigram is indexed
    (BM25 indexes them all, ``bm25_terms``): jieba cut the documents differently."""
    bigrams = han_bigrams(term) if len(term) > 2 else set()
    return bool(bigrams) and all(_document_frequency(b, indexes) for b in bigrams)


def _document_frequency(term: str, indexes: Sequence[PublishedIndex]) -> int:
    return sum(index.lexical.document_frequency(term) for index in indexes)


def _passage(
    row: _Row,
    score: float,
    dense_rank: int | None,
    lexical_rank: int | None,
    dense_score: float | None = None,
) -> Passage:
    return Passage(
        chunk_id=row.chunk_id,
        document_id=row.document_id,
        document_name=row.document_name,
        document_title=row.document_title,
        collection_id=row.collection_id,
        collection_name=row.collection_name,
        text=row.text,
        page_start=row.page_start,
        page_end=row.page_end,
        char_start=row.char_start,
        char_end=row.char_end,
        heading_path=row.heading_path,
        score=score,
        dense_rank=dense_rank,
        lexical_rank=lexical_rank,
        dense_score=dense_score,
    )


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


__all__ = ["MODES", "Mode", "Passage", "RetrievalResult", "RetrievalTimings", "Retriever"]
