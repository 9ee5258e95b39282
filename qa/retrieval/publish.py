"""Publishing a collection's FAISS + BM25 indexes from the metadata DB (the one writer)."""

from __future__ import annotations

from dataclasses import dataclass

from qa.retrieval.index_store import IndexStore
from qa.store.catalog import index_material
from qa.store.db.engine import Database
from qa.store.db.models import Collection


@dataclass(frozen=True)
class Published:
    collection: str
    version: str
    count: int


def publish_collection(
    db: Database,
    store: IndexStore,
    collection_id: int,
    *,
    model_id: str,
    dim: int,
    kind: str = "flat",
) -> Published:
    """Rebuild both indexes of one collection from the DB; never re-embeds anything."""
    with db.session() as session:
        coll = session.get(Collection, collection_id)
        if coll is None:
            from qa.errors import NotFound

            raise NotFound(f"no collection with id {collection_id}")
        material = index_material(session, collection_id, dim, model_id)
        name, key = coll.name, coll.index_key
    version = store.publish(
        key,
        material.ids,
        material.vectors,
        material.term_lists,
        model_id=model_id,
        kind=kind,  # type: ignore[arg-type]
    )
    return Published(name, version, len(material.ids))
