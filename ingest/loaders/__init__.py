"""One loader per supported kind; :func:`load` picks it by the sniffed kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.document import ParsedDocument
from ingest.loaders import docx, email, html, image, markdown, pdf, pptx, text, xlsx
from qa.errors import NoExtractableText, PasswordProtected, UnsupportedType
from qa.messages import N_

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

Loader = Callable[[Path, "ParseLimits"], ParsedDocument]

LOADERS: dict[str, Loader] = {
    "pdf": pdf.load,
    "docx": docx.load,
    "pptx": pptx.load,
    "xlsx": xlsx.load,
    "html": html.load,
    "markdown": markdown.load,
    "text": text.load,
    "email": email.load,
    # scans and photos, read by OCR
    "png": image.load,
    "jpeg": image.load,
    "tiff": image.load,
}


def load(path: Path, kind: str, limits: ParseLimits) -> ParsedDocument:
    loader = LOADERS.get(kind)
    if loader is None:
        if kind == "empty":
            raise NoExtractableText(N_("empty file"))
        if kind == "encrypted-office":
            # Password-protected DOCX/XLSX/PPTX are OLE2 files wrapping an encrypted package.
            raise PasswordProtected()
        raise UnsupportedType(kind)
    return loader(path, limits)
