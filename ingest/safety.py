"""Checks that run before a hostile file can reach a parser.

Zip bombs: Office files are zip packages, and python-docx/pptx/openpyxl inflate parts in
memory. We judge the package by its central directory (entry count, declared sizes and
ratio) before any part is inflated; Python's ``zipfile`` never inflates more than an entry's
declared size, so declared sizes bound the real work.

Entities: python-docx and python-pptx build lxml parsers with ``resolve_entities=False`` and
openpyxl uses defusedxml when it is installed, but a DOCTYPE has no business in an Office
package at all, so any part that declares one is refused outright ("defence in depth":
a future library version cannot silently start honouring it).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Protocol

from qa.errors import HostileFile
from qa.messages import N_

# Parts smaller than this may compress very well (runs of spaces in XML) without harm.
_RATIO_MIN_BYTES = 1024 * 1024
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_PROLOG_CHUNK = 4096
_PROLOG_MAX = 256 * 1024


class ZipLimits(Protocol):
    @property
    def zip_max_entries(self) -> int: ...
    @property
    def zip_max_uncompressed_bytes(self) -> int: ...
    @property
    def zip_max_ratio(self) -> float: ...


class FileSizeLimit(Protocol):
    @property
    def max_file_bytes(self) -> int: ...


def check_file_size(path: Path, limits: FileSizeLimit) -> None:
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        mb = limits.max_file_bytes / (1024 * 1024)
        raise HostileFile(
            N_(
                "file too large (%(size)s MB > %(limit)s MB)",
                size=f"{size / (1024 * 1024):.1f}",
                limit=f"{mb:g}",
            )
        )


def check_zip_package(path: Path, limits: ZipLimits) -> None:
    """Refuse zip bombs and XML parts with a DTD; raises ``HostileFile``."""
    with zipfile.ZipFile(path) as zf:
        check_zip_sizes(zf, limits)
        for info in zf.infolist():
            if info.filename.lower().endswith(_XML_SUFFIXES) and not info.is_dir():
                with zf.open(info) as part:
                    if prolog_declares_dtd(part):
                        raise HostileFile(
                            N_("XML with DTD/entities (%(name)s)", name=info.filename)
                        )


def check_zip_sizes(zf: zipfile.ZipFile, limits: ZipLimits) -> None:
    """Refuse a zip bomb from its central directory alone, before any member is read."""
    infos = zf.infolist()
    if len(infos) > limits.zip_max_entries:
        raise HostileFile(
            N_(
                "zip bomb: %(entries)s entries (limit %(limit)s)",
                entries=len(infos),
                limit=limits.zip_max_entries,
            )
        )
    total = sum(info.file_size for info in infos)
    if total > limits.zip_max_uncompressed_bytes:
        raise HostileFile(
            N_(
                "zip bomb: %(size)s bytes uncompressed (limit %(limit)s)",
                size=total,
                limit=limits.zip_max_uncompressed_bytes,
            )
        )
    compressed = sum(info.compress_size for info in infos)
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _RATIO_MIN_BYTES and ratio > limits.zip_max_ratio:
            raise HostileFile(
                N_(
                    "zip bomb: %(name)s expands %(ratio)sx (limit %(limit)sx)",
                    name=info.filename,
                    ratio=f"{ratio:.0f}",
                    limit=f"{limits.zip_max_ratio:g}",
                )
            )
    if total >= _RATIO_MIN_BYTES and total / max(compressed, 1) > limits.zip_max_ratio:
        raise HostileFile(
            N_("zip bomb: package expands %(ratio)sx", ratio=f"{total / max(compressed, 1):.0f}")
        )


def prolog_declares_dtd(stream: IO[bytes]) -> bool:
    """True if the XML document in ``stream`` has a ``<!DOCTYPE`` before its root element.

    Reads only the prolog (XML declaration, comments, processing instructions), so the cost
    does not depend on the size of the part. A prolog longer than 256 KiB is itself a trick.
    """
    data = b""
    while True:
        chunk = stream.read(_PROLOG_CHUNK)
        data += chunk
        verdict = _scan_prolog(_as_text(data))
        if verdict is not None:
            return verdict
        if not chunk:
            return False  # document ended inside the prolog: the parser will reject it
        if len(data) > _PROLOG_MAX:
            return True


def _as_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="ignore")
    return data.decode("latin-1")


def _scan_prolog(text: str) -> bool | None:
    """True = DTD found, False = root element reached first, None = need more text."""
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n\ufeff":
            pos += 1
        if pos >= n:
            return None
        if text.startswith("<?", pos):
            end, width = text.find("?>", pos + 2), 2
        elif text.startswith("<!--", pos):
            end, width = text.find("-->", pos + 4), 3
        elif text.startswith("<!", pos) or (len(text) - pos < 4 and "<!--".startswith(text[pos:])):
            # "<!" that is not a comment can only be a DOCTYPE here (or garbage): refuse both.
            return True if text.startswith("<!", pos) and len(text) - pos >= 4 else None
        else:
            return False  # the root element (or non-XML, which the parser rejects itself)
        if end < 0:
            return None
        pos = end + width
