"""Collection slugs: URL-safe, stable when collections are added, unique within a list."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qa.library.slugs import MAX_SLUG_CHARS, find_by_slug, slugify, slugs


@dataclass(frozen=True)
class Item:
    id: int
    name: str


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Corpus trial", "corpus-trial"),
        ("  HR -- Policies 2026 ", "hr-policies-2026"),
        ("Café Übersicht", "cafe-ubersicht"),
        ("员工手册", ""),
        ("手册 v2", "v2"),
        ("../../etc/passwd", "etc-passwd"),
        ("a/b?c#d%20e", "a-b-c-d-20e"),
        ("ＡＢＣ１２", "abc12"),  # full-width forms fold to ASCII
        ("-", ""),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_long_names_are_cut_without_a_trailing_dash() -> None:
    slug = slugify("word " * 40)
    assert len(slug) <= MAX_SLUG_CHARS and not slug.endswith("-")


def test_the_older_collection_keeps_a_shared_slug_and_adding_one_changes_no_slug() -> None:
    first = [Item(3, "Sales"), Item(9, "员工手册")]
    before = slugs(first)
    assert before == {3: "sales", 9: "collection-9"}
    after = slugs([*first, Item(12, "SALES"), Item(14, "sales-12")])
    assert after == {3: "sales", 9: "collection-9", 12: "sales-12", 14: "sales-12-14"}
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == len(after)


def test_find_by_slug() -> None:
    items = [Item(3, "Sales"), Item(12, "SALES"), Item(9, "员工手册")]
    assert find_by_slug(items, "sales") == 3
    assert find_by_slug(items, "sales-12") == 12
    assert find_by_slug(items, "sales-3") == 3  # <slug>-<id> always names its collection
    assert find_by_slug(items, "SALES") == 12  # an exact name, as before slugs
    assert find_by_slug(items, "员工手册") == 9
    assert find_by_slug(items, "collection-9") == 9
    assert find_by_slug(items, "sales-9") is None
    assert find_by_slug(items, "") is None
    assert find_by_slug([], "sales") is None
