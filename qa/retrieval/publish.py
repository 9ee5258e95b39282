"""Publishing a collection's FAISS + BM25 indexes from the metadata DB (the one writer).

BM25 is built from the lexical terms stored with each chunk at ingest. When the
collection's current index records another ``ANALYZER_VERSION`` than this code's (an
upgrade changed the analysis, e.g. Traditional -> Simplified normalisation), the stored
terms are stale: they are re-derived from the stored chunk text first (analysis only, no
re-embedding; about 300k Chinese characters a second) and the index records the new
version. Questions are analyzed by the running code, so until that publish a collection's
old index matches them worse (a Traditional question no longer meets the old index's
unconverted Traditional terms); the reconciler republishes such collections, and
``docqa reindex`` does it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from qa.retrieval.index_store import IndexStore, manifest_analyzer
from qa.retrieval.lexical import ANALYZER_VERSION, bm25_terms
from qa.store.catalog import chunk_texts, index_material, reindex_done, set_chunk_terms
from qa.store.db.engine import Database
from qa.store.db.models import Chunk, Collection


@dataclass(frozen=True)
class Published:
    collection: str
    version: str
    count: int
    #: chunks whose stored terms were re-derived (an older analyzer made them)
    reanalyzed: int = 0


def terms_outdated(store: IndexStore, collection_key: str) -> bool:
    """Whether the collection's current index was built from an older analyzer's terms.

    A collection never published is taken as current: its chunks were analyzed at ingest
    by this code.
    """
    manifest = store.current_manifest(collection_key)
    return manifest is not None and manifest_analyzer(manifest) != ANALYZER_VERSION


def reanalyze_chunks(db: Database, collection_id: int) -> int:
    """Re-derive every chunk's stored terms from its text; returns how many chunks."""
    done = 0
    with db.session() as session:
        for batch in chunk_texts(session, collection_id):
            set_chunk_terms(session, {cid: " ".join(bm25_terms(text)) for cid, text in batch})
            done += len(batch)
        session.commit()
    return done


def publish_collection(
    db: Database,
    store: IndexStore,
    collection_id: int,
    *,
    model_id: str,
    dim: int,
    kind: str = "flat",
) -> Published:
    """Rebuild both indexes of one collection from the DB; never re-embeds anything.

    Any publish satisfies a reindex request made before it read the DB (the request is
    cleared once the new version is in place; a newer one stays)."""
    with db.session() as session:
        coll = session.get(Collection, collection_id)
        if coll is None:
            from qa.errors import NotFound

            raise NotFound(f"no collection with id {collection_id}")
        name, key, requested = coll.name, coll.index_key, coll.reindex_requested_at
    reanalyzed = reanalyze_chunks(db, collection_id) if terms_outdated(store, key) else 0
    with db.session() as session:
        material = index_material(session, collection_id, dim, model_id)
    version = store.publish(
        key,
        material.ids,
        material.vectors,
        material.term_lists,
        model_id=model_id,
        kind=kind,  # type: ignore[arg-type]
        analyzer=ANALYZER_VERSION,
    )
    if requested is not None:
        with db.session() as session:
            reindex_done(session, collection_id, requested)
            session.commit()
    return Published(name, version, len(material.ids), reanalyzed)


def unpublished_chunks(db: Database, store: IndexStore) -> dict[str, int]:
    """Per collection name: chunks of indexed documents its published version does not
    hold yet, as a count difference (the DB's chunks minus the version's; a version still
    holding deleted chunks counts 0). Only collections with such chunks are listed."""
    with db.session() as session:
        counts = [
            (coll.name, coll.index_key, int(chunks))
            for coll, chunks in session.execute(
                select(Collection, func.count(Chunk.id))
                .join(Chunk, Chunk.collection_id == Collection.id)
                .group_by(Collection.id)
            ).all()
        ]
    behind = {}
    for name, key, chunks in counts:
        manifest = store.current_manifest(key)
        published = int(manifest.get("count", 0)) if manifest is not None else 0
        if chunks > published:
            behind[name] = chunks - published
    return behind
