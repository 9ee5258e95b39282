"""Type detection from content: magic wins over names; names only break text ties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sniff import SUPPORTED, sniff, sniff_path
from qa.errors import ParseError
from tests.ingest import samples

EMAIL = b"Received: from mx.example.com\r\nFrom: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("head", "name", "kind"),
    [
        (b"", "report.pdf", "empty"),
        (b"%PDF-1.7\n1 0 obj", None, "pdf"),
        (b"junk before the header " * 10 + b"%PDF-1.4\n", "x.txt", "pdf"),
        (b"<!DOCTYPE html><html><p>hi</p></html>", "report.pdf", "html"),
        (b"\xef\xbb\xbf  <html lang=en><body>x</body></html>", None, "html"),
        (b'<?xml version="1.0"?><!DOCTYPE html><html xmlns="x"></html>', None, "html"),
        (b'<?xml version="1.0"?><catalog><item/></catalog>', None, "xml"),
        (EMAIL, "notes.txt", "email"),
        (b"From: a@example.com\nTo: b@example.com\nSubject: x\n\nhello", None, "email"),
        (b"Subject: only one header\n\nThis is a memo, not an email.", None, "text"),
        (b"MIME-Version: 1.0\nContent-Type: text/plain\n\nbody", None, "email"),
        (b"# Title\n\nSome text\n\n## Part\n", None, "markdown"),
        (b"# Title\n\nSome text\n\n## Part\n", "readme.txt", "text"),
        (b"Title\n=====\n\nplain words", "guide.md", "markdown"),
        (b"Title\n=====\n\n.. note:: rst", "guide.rst", "text"),
        (b"# a comment\nimport os\n# another\n", "tool.py", "text"),
        (b"Just some words on a line.\n", None, "text"),
        (b"caf\xe9 cr\xe8me \x80 in cp1252", None, "text"),
        ("Grüße".encode("utf-16"), None, "text"),
        (b"PK\x03\x04rest", "a.docx", "zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "a.doc", "ole"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "scan.pdf", "png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None, "jpeg"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", None, "wav"),
        (b"{\\rtf1\\ansi hello}", "a.txt", "rtf"),
        (bytes(range(256)) * 4, None, "binary"),
    ],
)
def test_sniff_from_content(head: bytes, name: str | None, kind: str) -> None:
    assert sniff(head, name) == kind


def test_supported_set_is_exactly_the_loader_kinds() -> None:
    from ingest.loaders import LOADERS

    assert set(LOADERS) == set(SUPPORTED)


@pytest.mark.parametrize(
    ("maker", "kind"),
    [
        (samples.make_docx, "docx"),
        (samples.make_pptx, "pptx"),
        (samples.make_xlsx, "xlsx"),
        (samples.make_pdf, "pdf"),
    ],
)
def test_sniff_path_tells_office_packages_apart_whatever_their_name(
    tmp_path: Path, maker: object, kind: str
) -> None:
    path = maker(tmp_path / "blob-without-extension")  # type: ignore[operator]
    assert sniff_path(path) == kind


def test_sniff_path_other_zips(tmp_path: Path) -> None:
    odt = samples.make_zip(
        tmp_path / "a.docx",
        {"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"},
    )
    epub = samples.make_zip(tmp_path / "b", {"mimetype": b"application/epub+zip"})
    plain = samples.make_zip(tmp_path / "c.xlsx", {"notes.txt": b"hello"})
    assert (sniff_path(odt), sniff_path(epub), sniff_path(plain)) == ("odt", "epub", "zip")


def test_sniff_path_damaged_zip_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(ParseError, match="damaged zip"):
        sniff_path(path)


def test_sniff_path_ole_stream_names(tmp_path: Path) -> None:
    magic = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    for stream, kind in [
        ("WordDocument", "doc"),
        ("__substg1.0_0037001F", "msg"),
        ("EncryptedPackage", "encrypted-office"),
    ]:
        path = tmp_path / f"{kind}.bin"
        path.write_bytes(magic + stream.encode("utf-16-le") + bytes(64))
        assert sniff_path(path) == kind


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([None, "a.md", "b.txt", "c.pdf", "d"]))
def test_sniff_never_fails_on_arbitrary_bytes(head: bytes, name: str | None) -> None:
    kind = sniff(head, name)
    assert isinstance(kind, str) and kind
    if head.startswith(b"%PDF-"):
        assert kind == "pdf"
