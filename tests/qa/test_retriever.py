"""Hybrid retrieval over real ingested samples: quality, access control, staleness, dedup.

Two collections are built through the real ingest pipeline (sandboxed parsing, chunker,
the packaged embedding model, published FAISS + BM25 indexes) on SQLite and PostgreSQL:

* ``handbook`` holds all four sample documents;
* ``finance`` holds only ``travel-and-expenses.pdf``, so the same text lives in both
  collections under different chunk ids: a leak across collections would show up as an
  id of the wrong collection, not as different text.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from ingest.pipeline import IngestService
from ingest.runner import run_ingest
from qa.errors import IndexUnavailable, InvalidInput
from qa.retrieval.embedder import Embedder
from qa.retrieval.index_store import IndexReader, IndexStore
from qa.retrieval.reranker import CrossEncoderReranker
from qa.retrieval.retriever import RetrievalResult, Retriever
from qa.retrieval.tokens import Tokenizer, packaged_model_dir
from qa.settings import Settings
from qa.store.blobstore import BlobStore
from qa.store.catalog import delete_document, ensure_collection
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Document
from tests.conftest import DATABASES, SAMPLES, fresh_postgres_database

HOTEL = "What is the hotel limit in London?"
PDF = "travel-and-expenses.pdf"


@dataclass
class Corpus:
    service: IngestService
    retriever: Retriever
    handbook: int
    finance: int

    def chunk_ids(self, collection_id: int) -> set[int]:
        with self.service.db.session() as s:
            return set(s.scalars(select(Chunk.id).where(Chunk.collection_id == collection_id)))


@contextmanager
def built_corpus(folder: Path, db: Database, embedder: Embedder) -> Iterator[Corpus]:
    settings = Settings(data_dir=folder / "var", database_url=db.url, parse_timeout_s=30)
    service = IngestService(
        settings, db, BlobStore(settings.blob_dir), embedder, IndexStore(settings.index_dir)
    )
    finance_docs = folder / "finance"
    finance_docs.mkdir()
    shutil.copy(SAMPLES / PDF, finance_docs / PDF)
    try:
        run_ingest(service, [SAMPLES], "handbook")
        run_ingest(service, [finance_docs], "finance")
        retriever = Retriever(db, IndexReader(service.indexes), embedder)
        yield Corpus(
            service,
            retriever,
            service.collection_id("handbook"),
            service.collection_id("finance"),
        )
    finally:
        service.close()


@pytest.fixture(scope="module", params=DATABASES)
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[Corpus]:
    """One corpus per database, shared by the tests that only read it (ingest is the cost)."""
    folder = tmp_path_factory.mktemp("corpus")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{folder / 'docqa.db'}"
        else:
            admin = request.getfixturevalue("postgres_admin_url")
            url = stack.enter_context(fresh_postgres_database(admin))
        db = Database(url)
        stack.callback(db.dispose)
        yield stack.enter_context(built_corpus(folder, db, embedder))


@pytest.fixture
def own_corpus(tmp_path: Path, db: Database, embedder: Embedder) -> Iterator[Corpus]:
    """A corpus of this test's own, for the tests that delete from it."""
    with built_corpus(tmp_path, db, embedder) as corpus:
        yield corpus


def _base(document_name: str) -> str:
    return document_name.rsplit("/", 1)[-1]  # names keep the folder they were ingested from


def _names(result: RetrievalResult) -> list[str]:
    return [_base(p.document_name) for p in result.passages]


# -- quality ---------------------------------------------------------------------------------


def test_finds_the_right_page_in_english_and_chinese(corpus: Corpus) -> None:
    hotel = corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=3)
    best = hotel.passages[0]
    assert _base(best.document_name) == PDF and "EUR 220" in best.text
    assert best.page_start <= 4 <= best.page_end
    assert best.collection_name == "handbook" and best.collection_id == corpus.handbook
    # Both rankers found it, and the fused score is the RRF of their ranks.
    assert best.dense_rank is not None and best.lexical_rank is not None
    expected = 1 / (60 + best.dense_rank) + 1 / (60 + best.lexical_rank)
    assert best.score == pytest.approx(expected)
    assert [p.score for p in hotel.passages] == sorted(
        (p.score for p in hotel.passages), reverse=True
    )

    leave = corpus.retriever.retrieve("带薪年假有几天？", [corpus.handbook], k=3)
    assert _base(leave.passages[0].document_name) == "员工福利指南.md"
    assert "十五天带薪年假" in leave.passages[0].text

    english_leave = corpus.retriever.retrieve(
        "How many days of paid annual leave do employees get?", [corpus.handbook], k=3
    )
    assert _base(english_leave.passages[0].document_name) == "employee-handbook.md"
    assert "27 days" in english_leave.passages[0].text


def test_chinese_question_skips_the_english_dense_model(corpus: Corpus) -> None:
    zh = corpus.retriever.retrieve("带薪年假有几天？", [corpus.handbook], k=5)
    assert zh.language == "zh" and not zh.dense_used
    assert all(p.dense_rank is None for p in zh.passages) and zh.passages
    en = corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=5)
    assert en.language == "en" and en.dense_used
    forced = Retriever(
        corpus.service.db,
        corpus.retriever.reader,
        corpus.retriever.embedder,
        dense_languages={"en", "zh"},
    ).retrieve("带薪年假有几天？", [corpus.handbook], k=5)
    assert forced.dense_used and any(p.dense_rank for p in forced.passages)


def test_modes_rank_with_one_list_only(corpus: Corpus) -> None:
    dense = corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=5, mode="dense")
    lexical = corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=5, mode="lexical")
    assert all(p.lexical_rank is None for p in dense.passages)
    assert [p.dense_rank for p in dense.passages] == [1, 2, 3, 4, 5]
    assert all(p.dense_rank is None for p in lexical.passages)
    # BM25 only returns chunks sharing a term with the question: maybe fewer than k.
    ranks = [p.lexical_rank for p in lexical.passages]
    assert ranks and ranks == list(range(1, len(ranks) + 1))
    assert lexical.timings.embed_ms < dense.timings.embed_ms  # no model call for BM25 only


def test_timings_are_reported_and_logged(corpus: Corpus, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="qa.retrieval.retriever"):
        result = corpus.retriever.retrieve(HOTEL, [corpus.handbook, corpus.finance])
    t = result.timings
    assert t.embed_ms > 0 and t.search_ms > 0 and t.hydrate_ms > 0
    assert t.total_ms >= t.embed_ms + t.search_ms + t.hydrate_ms
    assert any(
        "retrieval hybrid" in r.getMessage() and "ms" in r.getMessage() for r in caplog.records
    )
    assert result.searched == (corpus.handbook, corpus.finance)


# -- access control --------------------------------------------------------------------------


def test_only_allowed_collections_are_searched(corpus: Corpus) -> None:
    handbook_ids, finance_ids = corpus.chunk_ids(corpus.handbook), corpus.chunk_ids(corpus.finance)
    assert handbook_ids and finance_ids and not handbook_ids & finance_ids

    for question in (HOTEL, "带薪年假有几天？", "password rules for laptops"):
        only_finance = corpus.retriever.retrieve(question, [corpus.finance], k=20)
        ids = {p.chunk_id for p in only_finance.passages}
        # (The Chinese question finds nothing in the English PDF: BM25 alone ranks it.)
        assert ids <= finance_ids and (ids or question.startswith("带"))
        assert {p.collection_id for p in only_finance.passages} <= {corpus.finance}
        only_handbook = corpus.retriever.retrieve(question, [corpus.handbook], k=20)
        assert {p.chunk_id for p in only_handbook.passages} <= handbook_ids

    # The Chinese document exists only in handbook: asked in finance, it is simply absent.
    assert "员工福利指南.md" not in _names(
        corpus.retriever.retrieve("带薪年假有几天？", [corpus.finance], k=20)
    )
    # Dropping a collection from the allowed list removes all of it, nothing else changes.
    # (finance holds a copy of handbook's PDF: near-duplicate passages are shown once, from
    # whichever copy ranks first, so which collection a PDF passage comes from may vary.)
    both = corpus.retriever.retrieve(HOTEL, [corpus.handbook, corpus.finance], k=20)
    assert both.searched == (corpus.handbook, corpus.finance)
    assert {p.collection_id for p in both.passages} <= {corpus.handbook, corpus.finance}
    assert PDF in _names(both) and "employee-handbook.md" in _names(both)
    later = corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=20)
    assert {p.chunk_id for p in later.passages} <= handbook_ids


def test_nothing_allowed_or_unknown_collections_return_nothing(corpus: Corpus) -> None:
    assert corpus.retriever.retrieve(HOTEL, []).passages == []
    assert corpus.retriever.retrieve(HOTEL, [10_000]).passages == []
    mixed = corpus.retriever.retrieve(HOTEL, [10_000, corpus.finance], k=20)
    assert {p.collection_id for p in mixed.passages} == {corpus.finance}


def test_deleted_document_is_never_returned_before_republish(own_corpus: Corpus) -> None:
    with own_corpus.service.db.session() as s:
        pdf = s.scalar(
            select(Document).where(
                Document.collection_id == own_corpus.handbook,
                Document.original_name.like(f"%{PDF}"),
            )
        )
        assert pdf is not None
        pdf_id = pdf.id
        pdf_chunks = set(s.scalars(select(Chunk.id).where(Chunk.document_id == pdf_id)))
        delete_document(s, pdf)
        s.commit()
    # The published index still holds the PDF's chunks: nothing was republished.
    index = own_corpus.retriever.reader.get(f"c{own_corpus.handbook}")
    assert pdf_chunks & {i for i, _ in index.search_lexical(["hotel", "london"], 1000)}

    result = own_corpus.retriever.retrieve(HOTEL, [own_corpus.handbook], k=20)
    assert result.passages and not {p.chunk_id for p in result.passages} & pdf_chunks
    assert all(p.document_id != pdf_id for p in result.passages)
    assert result.stale == (own_corpus.handbook,)
    # Ranks are assigned after the deleted chunks are dropped: no gaps at the top.
    dense_ranks = sorted(p.dense_rank for p in result.passages if p.dense_rank)
    assert dense_ranks[:3] == [1, 2, 3]
    # The copy in the other collection is untouched.
    assert _names(own_corpus.retriever.retrieve(HOTEL, [own_corpus.finance]))[0] == PDF


# -- dedup, empty and unavailable collections --------------------------------------------------


def test_near_duplicates_across_collections_are_dropped(corpus: Corpus) -> None:
    both = [corpus.handbook, corpus.finance]
    result = corpus.retriever.retrieve(HOTEL, both, k=8)
    texts = [p.text for p in result.passages]
    assert len(texts) == 8 and len(set(texts)) == 8
    assert result.duplicates_dropped > 0

    no_dedup = Retriever(
        corpus.service.db, corpus.retriever.reader, corpus.retriever.embedder, dedup_threshold=2
    )
    raw = no_dedup.retrieve(HOTEL, both, k=8)
    assert len({p.text for p in raw.passages}) < 8 and raw.duplicates_dropped == 0


def test_empty_collection_returns_nothing_without_error(corpus: Corpus) -> None:
    with corpus.service.db.session() as s:
        empty = ensure_collection(s, "empty").id
        s.commit()
    assert corpus.retriever.retrieve(HOTEL, [empty]).passages == []
    assert corpus.retriever.retrieve(HOTEL, [empty, corpus.finance]).passages


def test_missing_index_is_reported_or_raised(own_corpus: Corpus) -> None:
    own_corpus.service.indexes.drop(f"c{own_corpus.finance}")
    result = own_corpus.retriever.retrieve(HOTEL, [own_corpus.handbook, own_corpus.finance], k=10)
    assert set(result.unavailable) == {own_corpus.finance}
    assert {p.collection_id for p in result.passages} == {own_corpus.handbook}
    with pytest.raises(IndexUnavailable, match="no index published"):
        own_corpus.retriever.retrieve(HOTEL, [own_corpus.finance])


class _OtherModel(Embedder):
    """The real model under another name: as if the service's model had been changed."""

    def __init__(self, real: Embedder) -> None:
        self.real = real
        self.model_id = "some-other-model"
        self.dim = real.dim
        self.max_tokens = real.max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self.real.tokenizer

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.real.embed_passages(texts)


def test_index_of_another_embedding_model_is_not_searched(corpus: Corpus) -> None:
    other = Retriever(
        corpus.service.db, corpus.retriever.reader, _OtherModel(corpus.retriever.embedder)
    )
    with pytest.raises(IndexUnavailable, match="re-ingest"):
        other.retrieve(HOTEL, [corpus.handbook])


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   \n\t "])
def test_empty_question_is_invalid(corpus: Corpus, question: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        corpus.retriever.retrieve(question, [corpus.handbook])


def test_bad_arguments_are_invalid(corpus: Corpus) -> None:
    with pytest.raises(InvalidInput):
        corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=0)
    with pytest.raises(InvalidInput):
        corpus.retriever.retrieve(HOTEL, "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        corpus.retriever.retrieve(HOTEL, [corpus.handbook], mode="fuzzy")  # type: ignore[arg-type]


def test_huge_question_is_truncated_and_still_answers(corpus: Corpus) -> None:
    huge = HOTEL + " " + "lorem ipsum dolor sit amet " * 40_000  # ~1 MB
    result = corpus.retriever.retrieve(huge, [corpus.handbook], k=5)
    assert PDF in _names(result)
    assert result.timings.total_ms < 30_000


# -- cross-encoder rerank --------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised one-layer BERT cross-encoder with the packaged tokenizer.

    Random weights give arbitrary but deterministic scores: enough to check that the
    ranking follows the model, not that the model is any good.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir()), local_files_only=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _reference_scores(folder: Path, question: str, texts: list[str]) -> list[float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = tok([question] * len(texts), texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[:, 0]
    return [float(x) for x in torch.sigmoid(logits)]


def test_cross_encoder_rerank_orders_by_its_scores(
    corpus: Corpus, tiny_cross_encoder: Path
) -> None:
    plain = corpus.retriever.retrieve(HOTEL, [corpus.handbook], k=6)
    reranker = CrossEncoderReranker(tiny_cross_encoder)
    reranked_retriever = Retriever(
        corpus.service.db,
        corpus.retriever.reader,
        corpus.retriever.embedder,
        reranker=reranker,
        rerank_depth=6,
    )
    reranked = reranked_retriever.retrieve(HOTEL, [corpus.handbook], k=6)
    # Same candidates (depth == k), new order: the reference model's, computed independently.
    assert {p.chunk_id for p in reranked.passages} == {p.chunk_id for p in plain.passages}
    expected = _reference_scores(tiny_cross_encoder, HOTEL, [p.text for p in plain.passages])
    by_id = dict(zip((p.chunk_id for p in plain.passages), expected, strict=True))
    assert [p.chunk_id for p in reranked.passages] == sorted(by_id, key=lambda c: -by_id[c])
    assert [p.score for p in reranked.passages] == pytest.approx(
        sorted(expected, reverse=True), abs=1e-5
    )
    assert [p.chunk_id for p in reranked.passages] != [p.chunk_id for p in plain.passages]
    assert reranked.timings.rerank_ms > 0


def test_cross_encoder_folder_must_exist(tmp_path: Path) -> None:
    from qa.errors import ConfigError

    with pytest.raises(ConfigError, match="cross-encoder"):
        CrossEncoderReranker(tmp_path / "nothing-here")
