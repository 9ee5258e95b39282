"""Page images of known text, made the way a scanner would: printed at A4, scanned at
150 dpi, slightly rotated and blurred. The OCR tests and bench (tests/bench/bench_ocr.py)
read them back and compare with the text they were made from.

Fonts: DejaVu Sans (English) and WenQuanYi Micro Hei (Chinese, `make browser` installs
fonts-wqy-microhei for the Chinese screenshots).
"""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = {
    "en": Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    "zh": Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
}
A4_INCHES = (8.27, 11.69)


def font_missing(lang: str) -> str | None:
    path = FONTS[lang]
    return None if path.is_file() else f"font {path} is not installed (make browser)"


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, lang: str) -> list[str]:
    """Greedy wrapping: at spaces for English, at any character for Chinese."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        units = paragraph.split(" ") if lang == "en" else list(paragraph)
        sep = " " if lang == "en" else ""
        for unit in units:
            candidate = f"{current}{sep}{unit}" if current else unit
            if font.getlength(candidate) <= width or not current:
                current = candidate
            else:
                lines.append(current)
                current = unit
        lines.append(current)
    return lines


def render_page(
    text: str, lang: str, *, dpi: int = 150, angle: float = 0.8, blur: float = 0.6
) -> Image.Image:
    """``text`` printed on an A4 page in 11-point type, as a grayscale scan."""
    width, height = (int(side * dpi) for side in A4_INCHES)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONTS[lang]), size=int(11 / 72 * dpi))
    margin = int(0.9 * dpi)
    line_height = int(font.size * 1.5)
    y = margin
    for line in _wrap(text, font, width - 2 * margin, lang):
        if y + line_height > height - margin:
            break
        draw.text((margin, y), line, font=font, fill=0)
        y += line_height
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    return page.filter(ImageFilter.GaussianBlur(blur)) if blur else page


def scanned_pdf(pages: list[Image.Image], dpi: int = 150) -> bytes:
    """An image-only PDF (no text layer), one scanned page per image."""
    out = io.BytesIO()
    first, *rest = [p.convert("RGB") for p in pages]
    first.save(out, format="PDF", save_all=True, append_images=rest, resolution=dpi)
    return out.getvalue()


def image_bytes(pages: list[Image.Image], fmt: str) -> bytes:
    """PNG / JPEG (first page) or a multi-page TIFF."""
    out = io.BytesIO()
    if fmt == "TIFF":
        pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:], dpi=(150, 150))
    else:
        pages[0].save(out, format=fmt, dpi=(150, 150))
    return out.getvalue()


def _comparable(text: str) -> str:
    """Text as compared for the error rate: NFKC, no whitespace (line breaks differ)."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def char_error_rate(truth: str, read: str) -> float:
    """Levenshtein distance over characters / length of the truth, whitespace ignored."""
    a, b = _comparable(truth), _comparable(read)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(1, len(a))
