from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from qa.errors import InvalidInput, NotFound
from qa.store.blobstore import BlobStore, display_name


def test_put_is_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    sha, size = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest() and size == 5
    assert store.put_bytes(b"hello") == (sha, 5)
    assert store.path_for(sha).read_bytes() == b"hello"
    assert store.path_for(sha).relative_to(tmp_path / "blobs").parts[:2] == (sha[:2], sha[2:4])
    assert list(store) == [sha]
    with store.open(sha) as f:
        assert f.read() == b"hello"
    store.delete(sha)
    with pytest.raises(NotFound):
        store.open(sha)


def test_size_cap_leaves_no_partial_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(InvalidInput, match="limit"):
        store.put_stream(io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


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
