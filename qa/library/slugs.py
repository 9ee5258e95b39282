"""URL-safe slugs for collection names, for ids clients type or put in URLs (the OpenAI
model ids ``docqa/<slug>``).

A collection's slug is its name in lower-case ASCII letters and digits joined by ``-``
("Corpus trial" -> ``corpus-trial``, "Q3 Finance & Legal" -> ``q3-finance-legal``). Names
with nothing ASCII to keep (``员工手册``) become ``collection-<id>``. When two collections
of one list share a slug, the older one (lower id; ids are never reused) keeps it and the
others get ``-<id>`` appended, so adding a collection never changes an existing slug.
``<slug>-<id>`` and ``collection-<id>`` always resolve too, whatever the list.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Protocol

MAX_SLUG_CHARS = 60
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class Named(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


def slugify(name: str) -> str:
    """Lower-case ASCII letters and digits of ``name`` (accents dropped), runs of anything
    else as one ``-``; "" when nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")
    return slug[:MAX_SLUG_CHARS].rstrip("-")


def slugs(items: Iterable[Named]) -> dict[int, str]:
    """Each item's slug, unique within ``items`` (see the module doc)."""
    taken: set[str] = set()
    out: dict[int, str] = {}
    for item in sorted(items, key=lambda i: i.id):
        base = slugify(item.name)
        slug = base if base and base not in taken else _with_id(base, item.id)
        taken.add(slug)
        out[item.id] = slug
    return out


def _with_id(base: str, item_id: int) -> str:
    return f"{base or 'collection'}-{item_id}"


def find_by_slug(items: Iterable[Named], wanted: str) -> int | None:
    """The id of the item ``wanted`` names: its slug, ``<slug>-<id>``, or (for clients
    configured before slugs) its exact name."""
    listed = list(items)
    for item_id, slug in slugs(listed).items():
        if wanted == slug:
            return item_id
    for item in listed:
        if wanted in (_with_id(slugify(item.name), item.id), item.name):
            return item.id
    return None
