"""Images (PNG, JPEG, TIFF with any number of pages) -> one OCR'd Page per image.

Photos are turned upright by their EXIF orientation first, and small images scaled up:
Tesseract reads body text best when letters are 20-30 pixels high, and a screenshot or a
72 dpi scan has them at 10-12. Pillow's own guard against decompression bombs is replaced
by an explicit pixel cap per frame, checked before a frame is decoded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from ingest import ocr
from ingest.document import Page, ParsedDocument
from qa.errors import HostileFile, NoExtractableText, ParseError
from qa.messages import N_

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

log = logging.getLogger(__name__)

#: a frame with more pixels than this is refused before decoding (a 600 dpi A3 scan is 70 MP)
MAX_FRAME_PIXELS = 100_000_000
#: images narrower than this are scaled up to it before OCR
MIN_WIDTH = 1600

KINDS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    if not limits.ocr:
        raise NoExtractableText(N_("an image, and OCR is off"))
    if ocr.engine() is None:
        raise NoExtractableText(N_("an image, and OCR is not installed"))
    # Our own per-frame check below replaces Pillow's global one (a warning at 89 MP).
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            kind = KINDS.get(image.format or "")
            if kind is None:
                raise ParseError(
                    N_("unsupported image format %(format)s", format=image.format or "unknown")
                )
            pages = _read_frames(image, limits)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and corrupt data as OSError / SyntaxError / ValueError.
        raise ParseError(
            N_("damaged image: %(error)s", error=str(exc)[:160] or type(exc).__name__)
        ) from exc
    if not any(p.text.strip() for p in pages):
        raise NoExtractableText(N_("OCR found no text"))
    return ParsedDocument(kind=kind, pages=tuple(pages), metadata={"pages": str(len(pages))})


def _read_frames(image: Image.Image, limits: ParseLimits) -> list[Page]:
    pages: list[Page] = []
    for index, frame in enumerate(ImageSequence.Iterator(image)):
        if index >= limits.ocr_max_pages:
            log.info("image has more than %d pages; the rest are not read", limits.ocr_max_pages)
            break
        width, height = frame.size
        if width * height > MAX_FRAME_PIXELS:
            raise HostileFile(
                N_(
                    "image page %(page)s is %(width)s x %(height)s pixels,"
                    " over the limit of %(limit)s million",
                    page=index + 1,
                    width=width,
                    height=height,
                    limit=MAX_FRAME_PIXELS // 1_000_000,
                )
            )
        upright = ImageOps.exif_transpose(frame).convert("L")
        pages.append(ocr.read_page(index + 1, _scaled_up(upright), limits))
    return pages


def _scaled_up(image: Image.Image) -> Image.Image:
    if image.width >= MIN_WIDTH or image.width == 0:
        return image
    factor = min(4.0, MIN_WIDTH / image.width)
    return image.resize((round(image.width * factor), round(image.height * factor)))
