"""Plain text -> pages split at form feeds (the one page marker plain text has)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ingest.document import Page, ParsedDocument
from ingest.loaders.common import normalize_text, require_text
from ingest.textdecode import decode_bytes

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    decoded = decode_bytes(path.read_bytes())
    text = normalize_text(decoded.text)
    chunks = text.split("\f")
    if len(chunks) > 1 and not chunks[-1].strip():
        chunks.pop()  # a form feed that ends the file does not start a page
    pages = tuple(Page(number, chunk) for number, chunk in enumerate(chunks, start=1))
    require_text(pages)
    return ParsedDocument(kind="text", pages=pages, metadata={"encoding": decoded.encoding})
