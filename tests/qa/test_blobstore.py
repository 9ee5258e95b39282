from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from qa.errors import InvalidInput, NotFound
from qa.store.blobstore import BlobStore, display_name


def _put(store: BlobStore, data: bytes) -> tuple[str, int]:
    with store.staged(io.BytesIO(data)) as staged:
        staged.place()
        return staged.sha256, staged.size


def test_put_is_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    sha, size = _put(store, b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest() and size == 5
    assert _put(store, b"hello") == (sha, 5)
    assert store.path_for(sha).read_bytes() == b"hello"
    assert list(store.incoming()) == []
    assert store.path_for(sha).relative_to(tmp_path / "blobs").parts[:2] == (sha[:2], sha[2:4])
    assert list(store) == [sha]
    with store.open(sha) as f:
        assert f.read() == b"hello"
    assert store.delete(sha) and not store.delete(sha)
    with pytest.raises(NotFound):
        store.open(sha)


def test_staged_bytes_are_not_in_place_until_placed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.staged(io.BytesIO(b"draft")) as staged:
        assert not store.exists(staged.sha256) and len(list(store.incoming())) == 1
    assert not store.exists(staged.sha256) and list(store.incoming()) == []


def test_size_cap_leaves_no_partial_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(InvalidInput, match="limit"):
        _put_capped(store)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def _put_capped(store: BlobStore) -> None:
    with store.staged(io.BytesIO(b"x" * 5000), max_bytes=4096) as staged:
        staged.place()


def test_hostile_digest_never_becomes_a_path(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63, "a" * 64 + "/x"):
        with pytest.raises(InvalidInput):
            store.path_for(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "etc/passwd"),
        ("a/../b\x00.pdf", "a/b.pdf"),
        ("C:\\Users\\x\\doc.docx", "C:/Users/x/doc.docx"),
        ("", "unnamed"),
        ("\x00\x01", "unnamed"),
    ],
)
def test_display_name_is_sanitized(raw: str, expected: str) -> None:
    assert display_name(raw) == expected
    assert ".." not in display_name(raw).split("/")


def test_display_name_is_bounded() -> None:
    assert len(display_name("x" * 5000)) == 512
