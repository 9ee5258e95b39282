"""Detect a file's type from its content; the name only breaks ties between text kinds.

Uploads arrive with whatever name the user's machine gave them (or none: blobs are stored by
hash), so binary magic always wins over the extension: an HTML page named ``report.pdf`` is
HTML. Zip containers are told apart by their entries, which needs the central directory at
the END of the file; :func:`sniff_path` reads it (names only, nothing is decompressed
except a tiny ODF/EPUB ``mimetype`` entry and the ``[Content_Types].xml`` part).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePath

import defusedxml.ElementTree as SafeET

from ingest.textdecode import bom_encoding, utf16_without_bom
from qa.errors import ParseError
from qa.messages import N_

#: kinds the loaders can turn into text; everything else ends as UnsupportedType
SUPPORTED = frozenset(
    {"pdf", "docx", "pptx", "xlsx", "html", "markdown", "text", "email", "png", "jpeg", "tiff"}
)

HEAD_BYTES = 8192
#: how much of an OLE2 file we scan for stream names to say what it is
_OLE_SCAN_BYTES = 8 * 1024 * 1024

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# (prefix, kind) checked at offset 0
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (_OLE_MAGIC, "ole"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"{\\rtf", "rtf"),
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
    (b"ID3", "mp3"),
    (b"OggS", "ogg"),
    (b"fLaC", "flac"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"%!PS", "postscript"),
)

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

_EMAIL_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "received",
        "mime-version",
        "message-id",
        "return-path",
        "delivered-to",
        "reply-to",
        "content-type",
        "x-mailer",
        "sender",
        "in-reply-to",
        "references",
        "thread-topic",
        "x-originating-ip",
        "dkim-signature",
    }
)
# One of these alone is proof enough; they never start other text formats.
_STRONG_EMAIL_HEADERS = frozenset(
    {"received", "mime-version", "message-id", "return-path", "delivered-to", "dkim-signature"}
)
_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$")

_HTML_START = re.compile(
    r"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|meta|title|div|p|h[1-6]|table"
    r"|ul|ol|span|a|br|section|article|header|nav|main|pre|form|link|style|script|iframe)\b",
    re.IGNORECASE | re.DOTALL,
)
_XML_START = re.compile(r"^\s*<\?xml\b", re.IGNORECASE)
_XHTML = re.compile(r"<(?:!doctype\s+html|html)\b", re.IGNORECASE)

_MD_STRONG = re.compile(r"^(?: {0,3}#{1,6} \S|```|~~~| {0,3}\|?\s*:?-{3,}:?\s*\|)", re.MULTILINE)
_MD_WEAK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)|^ {0,3}(?:[-*+]|\d+\.) \S|\*\*\S", re.MULTILINE)

_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn"})
# Plain-text formats whose lines may look like Markdown ("# comment" in Python or YAML).
_PLAIN_SUFFIXES = frozenset(
    {
        ".txt",
        ".text",
        ".rst",
        ".csv",
        ".tsv",
        ".log",
        ".org",
        ".json",
        ".jsonl",
        ".ndjson",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".py",
        ".sh",
        ".r",
        ".pl",
        ".rb",
        ".go",
        ".c",
        ".h",
        ".cpp",
        ".java",
        ".js",
        ".ts",
        ".sql",
        ".tex",
    }
)


def _suffix(name: str | None) -> str:
    return PurePath(name).suffix.lower() if name else ""


def _binary_kind(head: bytes) -> str | None:
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00":
        return "bmp"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WAVE": "wav", b"WEBP": "webp", b"AVI ": "avi"}.get(head[8:12], "riff")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
            return "heic"
        return "mp4"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    return None


def _decode_head(head: bytes) -> str | None:
    """The head as text, or None if it does not look like text at all."""
    encoding = bom_encoding(head) or utf16_without_bom(head)
    if encoding is None:
        if b"\x00" in head:
            return None
        encoding = "utf-8"
    # The head may end in the middle of a multi-byte character: decode leniently and judge
    # by the amount of damage, not by the first error.
    text = head.decode(encoding, errors="replace")
    if encoding == "utf-8" and text.count("\ufffd") > 0:
        # Legacy 8-bit encodings (cp1252, GB18030, Shift-JIS) are still text; reject only if
        # control characters dominate.
        text = head.decode("latin-1")
    text = text.lstrip("\ufeff")
    if not text:
        return ""
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f\x1b")
    if controls > max(2, len(text) // 50):
        return None
    return text


def _looks_like_email(text: str) -> bool:
    lines = text.lstrip("\n").split("\n")
    if lines and lines[0].startswith("From ") and not _HEADER_LINE.match(lines[0]):
        lines = lines[1:]  # mbox separator line "From addr date"
    names: set[str] = set()
    for line in lines[:60]:
        line = line.rstrip("\r")
        if not line:
            break
        if line[0] in " \t" and names:
            continue  # folded continuation of the previous header
        match = _HEADER_LINE.match(line)
        if not match:
            return False
        names.add(match.group(1).lower())
    known = names & _EMAIL_HEADERS
    return bool(known & _STRONG_EMAIL_HEADERS) or len(known) >= 2


def _text_kind(text: str, name: str | None) -> str:
    if _looks_like_email(text):
        return "email"
    if _HTML_START.match(text) or (_XML_START.match(text) and _XHTML.search(text[:2048])):
        return "html"
    if _XML_START.match(text):
        return "xml"
    suffix = _suffix(name)
    if suffix in _MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in _PLAIN_SUFFIXES:
        return "text"
    strong = len(_MD_STRONG.findall(text))
    weak = len(_MD_WEAK.findall(text))
    return "markdown" if strong >= 2 or (strong and weak) else "text"


def sniff(head: bytes, name: str | None = None) -> str:
    """Type of a file from its first bytes (8 KiB is plenty); ``name`` only breaks text ties.

    Zip containers come back as ``"zip"``: :func:`sniff_path` refines them.
    """
    if not head:
        return "empty"
    kind = _binary_kind(head)
    if kind is not None:
        return kind
    text = _decode_head(head)
    if text is None:
        return "binary"
    if not text.strip():
        return "text"  # whitespace only: the text loader reports "no extractable text"
    return _text_kind(text, name)


def sniff_path(path: Path, name: str | None = None) -> str:
    """Type of the file at ``path``; the main entry point (looks inside zip and OLE2 files).

    ``name`` is the file's original name when ``path`` is a blob stored by hash.
    """
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    kind = sniff(head, name or path.name)
    if kind == "zip":
        return _zip_kind(path)
    if kind == "ole":
        return _ole_kind(path)
    return kind


_OOXML_MAIN_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": "docx",
    "application/vnd.ms-word.document.macroenabled.main+xml": "docm",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml": "dotx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
    # python-pptx reads macro-enabled decks too (macros are never run)
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": "pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml": "ppsx",
    "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml": "potx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": "xlsx",
    # openpyxl reads xlsm/xltx/xltm workbooks; only values are used
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": "xlsx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml": "xlsx",
    "application/vnd.ms-excel.template.macroenabled.main+xml": "xlsx",
}
_ODF_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/epub+zip": "epub",
}
_MAX_SMALL_ENTRY = 1024 * 1024


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            mimetype = infos.get("mimetype")
            if mimetype is not None and mimetype.file_size < 200:
                value = zf.read(mimetype).decode("ascii", errors="replace").strip()
                return _ODF_MIMETYPES.get(value, "zip")
            content_types = infos.get("[Content_Types].xml")
            if content_types is not None and content_types.file_size < _MAX_SMALL_ENTRY:
                return _ooxml_kind(zf.read(content_types)) or "zip"
            return "zip"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ParseError(N_("damaged zip container: %(error)s", error=exc)) from exc
    except (SafeET.ParseError, ValueError) as exc:
        # defusedxml refuses DTDs/entities with its own ValueError subclasses
        raise ParseError(
            N_("damaged Office package ([Content_Types].xml): %(error)s", error=exc)
        ) from exc


def _ooxml_kind(content_types_xml: bytes) -> str | None:
    """The package kind from its main part's content type (an Override, or a Default)."""
    root = SafeET.fromstring(content_types_xml)
    by_tag: dict[str, list[str]] = {"Override": [], "Default": []}
    for element in root:
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in by_tag:
            by_tag[tag].append(element.get("ContentType", "").lower())
    for content_type in by_tag["Override"] + by_tag["Default"]:
        kind = _OOXML_MAIN_TYPES.get(content_type)
        if kind is not None:
            return kind
    return None


# OLE2 directory entries store stream names in UTF-16LE; their presence tells the format.
_OLE_STREAMS: tuple[tuple[str, str], ...] = (
    ("EncryptedPackage", "encrypted-office"),
    ("__substg1.0_", "msg"),
    ("WordDocument", "doc"),
    ("PowerPoint Document", "ppt"),
    ("Workbook", "xls"),
    ("Book", "xls"),
)


def _ole_kind(path: Path) -> str:
    with path.open("rb") as fh:
        data = fh.read(_OLE_SCAN_BYTES)
    for stream, kind in _OLE_STREAMS:
        if stream.encode("utf-16-le") in data:
            return kind
    return "ole"
