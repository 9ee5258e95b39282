"""Scanned PDF pages: pages with no text layer, rendered by PDFium and read by OCR.

A page counts as scanned when its text layer has almost no letters (ingest.ocr.needs_ocr):
scanners often stamp a page number or their own name on an image-only page. Each such page
is rendered in gray at the OCR resolution and read on its own, so a partly scanned file is
handled page by page and keeps every page number.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pypdfium2 as pdfium

from ingest import ocr
from ingest.document import Page

if TYPE_CHECKING:
    from PIL.Image import Image

    from ingest.sandbox import ParseLimits

log = logging.getLogger(__name__)


@dataclass
class Scans:
    """OCR'd pages by index; ``attempted`` when OCR ran on at least one page."""

    pages: dict[int, Page] = field(default_factory=dict)
    attempted: bool = False
    #: scanned pages past ocr_max_pages, left without text
    skipped: int = 0


def read(path: Path, texts: list[str], limits: ParseLimits) -> Scans:
    """The scanned pages among ``texts`` (one per PDF page), read by OCR when it is on and
    installed. A page whose OCR finds fewer letters than its text layer keeps the layer."""
    indices = [i for i, text in enumerate(texts) if ocr.needs_ocr(text)]
    scans = Scans()
    if not indices or not limits.ocr or ocr.engine() is None:
        return scans
    try:
        doc = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        log.info("%s: PDFium can't open it for OCR: %s", path.name, exc)
        return scans
    try:
        if len(doc) != len(texts):
            return scans  # the engines disagree on the pages: numbers could not be trusted
        scans.skipped = max(0, len(indices) - limits.ocr_max_pages)
        for index in indices[: limits.ocr_max_pages]:
            image = _render(doc, index)
            if image is None:
                continue
            scans.attempted = True
            page = ocr.read_page(index + 1, image, limits)
            if ocr.letters(page.text) > ocr.letters(texts[index]):
                scans.pages[index] = page
        return scans
    finally:
        doc.close()


def _render(doc: pdfium.PdfDocument, index: int) -> Image | None:
    """Page ``index`` as a gray PIL image at the OCR resolution (smaller for huge pages)."""
    try:
        page = doc[index]
    except pdfium.PdfiumError:
        return None
    try:
        width, height = page.get_size()  # points
        area = max(1.0, float(width) * float(height))
        scale = min(ocr.DPI / 72, math.sqrt(ocr.MAX_PIXELS / area))
        image: Image = page.render(scale=scale, grayscale=True).to_pil()
        return image
    except pdfium.PdfiumError as exc:
        log.info("page %d: PDFium can't render it: %s", index + 1, exc)
        return None
    finally:
        page.close()
