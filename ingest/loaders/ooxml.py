"""Opening Office packages (DOCX, PPTX) that miss a part their relationships name.

python-docx and python-pptx load every part a relationship points at, so one picture lost
from ``word/media`` (a truncated copy, a careless tool) makes the whole document fail with
a ``KeyError``. Word itself opens such files and shows an empty frame. Here the package is
opened again with an empty stand-in for each missing part: the text is all there, and the
pictures were never read anyway.
"""

from __future__ import annotations

import io
import logging
import posixpath
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import defusedxml.ElementTree as SafeET

log = logging.getLogger(__name__)

T = TypeVar("T")


def open_package(path: Path, opener: Callable[[IO[bytes]], T]) -> tuple[T, list[str]]:
    """``opener`` on the file; if a part it needs is missing, on the file with those parts
    filled by empty stand-ins. Returns what it opened and the parts that were missing."""
    try:
        with path.open("rb") as fh:
            return opener(fh), []
    except KeyError:
        package, missing = _with_missing_parts(path)
        if not missing:
            raise
        log.info("%s: opened without its missing parts %s", path.name, missing)
        return opener(package), missing


def _with_missing_parts(path: Path) -> tuple[io.BytesIO, list[str]]:
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        missing: list[str] = []
        for rels in sorted(n for n in names if n.endswith(".rels")):
            # word/_rels/document.xml.rels describes word/document.xml: targets are
            # relative to word/; _rels/.rels describes the package root.
            folder = posixpath.dirname(posixpath.dirname(rels))
            for rel in SafeET.fromstring(zf.read(rels)):
                target = rel.get("Target") or ""
                if not target or rel.get("TargetMode") == "External":
                    continue
                if target.startswith("/"):
                    part = posixpath.normpath(target.lstrip("/"))
                else:
                    part = posixpath.normpath(posixpath.join(folder, target))
                if part not in names and part not in missing and not part.startswith(".."):
                    missing.append(part)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as rebuilt:
            for item in zf.infolist():
                rebuilt.writestr(item, zf.read(item.filename))
            for part in missing:
                rebuilt.writestr(part, b"")
    out.seek(0)
    return out, missing
