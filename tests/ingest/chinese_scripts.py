"""Test helpers for Traditional Chinese retrieval: a Traditional copy of a BEIR folder and
the baseline docqa must not lose to, a plain BM25 over character unigrams and bigrams.

The Traditional copy is made here, with OpenCC's Simplified -> Traditional (Taiwan
standard) tables: XQuAD has no Traditional edition. The product converts the other way
with other tables (Taiwan and Hong Kong variants -> Simplified) and only for its terms.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import opencc
from sqlalchemy import select

from ingest.evaluation import EvalReport, iter_corpus, load_queries
from qa.retrieval.bm25 import BM25Index
from qa.retrieval.ir_metrics import ndcg_at_k, unique_in_order
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Document

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_TOKEN = re.compile(rf"(?P<han>[{_HAN}]+)|[^\W_{_HAN}]+")


def converter(config: str = "s2tw") -> Callable[[str], str]:
    """An OpenCC conversion (``s2tw``: Simplified -> Traditional, Taiwan standard)."""
    return opencc.OpenCC(config).convert  # type: ignore[no-any-return]


def convert_beir(source: Path, out: Path, convert: Callable[[str], str]) -> Path:
    """A copy of the BEIR folder ``source`` in ``out`` with document texts, titles and
    queries passed through ``convert``; ids and qrels unchanged."""
    (out / "qrels").mkdir(parents=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for line in (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            doc["title"], doc["text"] = convert(doc.get("title", "")), convert(doc["text"])
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            query = json.loads(line)
            query["text"] = convert(query["text"])
            fh.write(json.dumps(query, ensure_ascii=False) + "\n")
    for qrels in (source / "qrels").iterdir():
        (out / "qrels" / qrels.name).write_bytes(qrels.read_bytes())
    return out


def character_terms(text: str) -> list[str]:
    """Plain CJK analysis: every Han character and every adjacent pair, as written (no
    script conversion, no dictionary, no stopwords); other words lower-cased whole."""
    terms: list[str] = []
    for m in _TOKEN.finditer(unicodedata.normalize("NFKC", text).casefold()):
        value = m.group()
        if m.lastgroup == "han":
            terms.extend(value)
            terms.extend(value[i : i + 2] for i in range(len(value) - 1))
        else:
            terms.append(value)
    return terms


def character_bm25_ndcg(beir: Path, *, split: str = "test") -> float:
    """nDCG@10 of a plain BM25 over ``character_terms`` of whole documents (title + text,
    as the eval ingests them; no chunking) for every judged query of ``beir``."""
    docs = list(iter_corpus(beir))
    texts = [f"{d.title}\n\n{d.text}" if d.title else d.text for d in docs]
    index = BM25Index.build(
        np.arange(len(docs), dtype=np.int64), [character_terms(t) for t in texts]
    )
    queries = load_queries(beir, split)
    scores = []
    for qid, question in sorted(queries.texts.items()):
        ranked = [docs[i].id for i, _ in index.search(character_terms(question), 10)]
        scores.append(ndcg_at_k(ranked, queries.qrels[qid], 10))
    return sum(scores) / len(scores)


def character_bm25_ndcg_on_chunks(report: EvalReport, *, split: str = "test") -> float:
    """The same baseline over the very chunks the eval indexed (read from its DB), a
    document ranked by its best chunk as in the eval: the analysis alone compared."""
    db = Database(f"sqlite:///{(report.index_dir / 'eval.db').resolve()}")
    try:
        with db.session() as session:
            rows = session.execute(
                select(Document.original_name, Chunk.text)
                .join(Document, Document.id == Chunk.document_id)
                .order_by(Chunk.id)
            ).all()
    finally:
        db.dispose()
    index = BM25Index.build(
        np.arange(len(rows), dtype=np.int64), [character_terms(text) for _, text in rows]
    )
    queries = load_queries(Path(report.dataset), split)
    scores = []
    for qid, question in sorted(queries.texts.items()):
        hits = index.search(character_terms(question), 50)
        ranked = unique_in_order(str(rows[i][0]) for i, _ in hits)
        scores.append(ndcg_at_k(ranked, queries.qrels[qid], 10))
    return sum(scores) / len(scores)
