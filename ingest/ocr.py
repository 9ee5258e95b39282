"""Text from page images: Tesseract OCR (Debian's ``tesseract-ocr`` + ``tesseract-ocr-chi-sim``).

Why Tesseract: measured on pages rendered from real XQuAD paragraphs (tests/bench/bench_ocr.py),
``chi_sim+eng`` read English at 0.46 % and Chinese at 3.6 % character error rate, about a
page a second on one core, from 15 MB of distribution packages with no model download.
RapidOCR (PP-OCRv4) read Chinese better (0.8 %) but English at 8 %, 3-5x slower, and needs
300 MB of OpenCV.

The engine runs as a child of the sandboxed parser, so the parser's memory cap (RLIMIT_AS is
inherited) holds for it too; each page gets its own CPU-time cap and a wall-clock timeout, and
the process dies with the parser (PR_SET_PDEATHSIG) when the parser is killed. The image goes
in on stdin as an uncompressed PGM, the words come back as TSV with their boxes.
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingest.document import Page, TextBox
from ingest.loaders.common import normalize_text
from qa.errors import ParseError, ParseLimitExceeded
from qa.messages import N_

if TYPE_CHECKING:
    from PIL.Image import Image

    from ingest.sandbox import ParseLimits

log = logging.getLogger(__name__)

#: Chinese first: with "eng+chi_sim" Tesseract reads Chinese lines as Latin junk more often
LANGUAGES = ("chi_sim", "eng")
#: pages are rendered (PDF) or scaled (images) to about this resolution: Tesseract's own
#: advice is 300 dpi; 200 reads body text as well here and takes half the time
DPI = 200
#: a page image larger than this many pixels is scaled down first (an A4 page at 300 dpi
#: is 8.7 MP; a 20,000 x 20,000 "image" is a memory attack, not a scan)
MAX_PIXELS = 12_000_000
#: words Tesseract itself is less sure of than this (0-100) are dropped. Any cut-off above
#: 0 loses real Chinese characters (at 30: 4.2 % CER instead of 3.5 % on rendered XQuAD);
#: junk from noise and pictures is dropped by line instead (no letters: a line of rules)
MIN_CONFIDENCE = 0
#: a page whose text layer has fewer letters than this is treated as having none (a scan
#: often carries a stamped page number or a scanner's name)
MIN_TEXT_LETTERS = 8

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
_LETTER = re.compile(r"\w")


@dataclass(frozen=True)
class Recognized:
    text: str
    boxes: tuple[TextBox, ...]


@functools.cache
def engine() -> str | None:
    """Path of the tesseract binary when it and both languages are installed, else None."""
    binary = shutil.which("tesseract")
    if binary is None:
        return None
    try:
        listed = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    missing = [lang for lang in LANGUAGES if lang not in listed]
    if missing:
        log.warning("OCR is off: tesseract has no %s language data", ", ".join(missing))
        return None
    return binary


def letters(text: str) -> int:
    return len(_LETTER.findall(text))


def needs_ocr(text: str) -> bool:
    return letters(text) < MIN_TEXT_LETTERS


def read_page(number: int, image: Image, limits: ParseLimits) -> Page:
    """Page ``number`` from its image (a scan or a rendered PDF page), marked as OCR'd."""
    from ingest.sandbox import progress

    progress()  # the parent now waits for one more page, and the CPU budget starts afresh
    found = recognize(image, timeout_s=limits.ocr_page_s, cpu_s=limits.ocr_page_s)
    return Page(number=number, text=found.text, ocr=True, boxes=found.boxes)


def recognize(
    image: Image, *, timeout_s: float, cpu_s: int, languages: tuple[str, ...] = LANGUAGES
) -> Recognized:
    """The text of one page image, lines in reading order. Raises ParseLimitExceeded when
    the engine runs past its caps and ParseError when it fails or is missing."""
    binary = engine()
    if binary is None:
        raise ParseError(N_("OCR is not installed (tesseract-ocr with chi_sim)"))
    gray = _fit(image.convert("L"))
    buffer = io.BytesIO()
    gray.save(buffer, format="PPM")  # "L" saves as binary PGM: no compression to pay for
    cmd = [binary, "stdin", "stdout", "-l", "+".join(languages), "--psm", "3"]
    cmd += ["-c", "preserve_interword_spaces=1", "tsv"]
    # One thread per page: pages of two documents run in two parsers, and OpenMP's own
    # threads would only fight them for the same two cores.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.run(
            cmd,
            input=buffer.getvalue(),
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
            preexec_fn=functools.partial(_engine_limits, cpu_s),
        )
    except subprocess.TimeoutExpired as exc:
        raise ParseLimitExceeded(
            N_("OCR of a page took longer than %(seconds)s s", seconds=f"{timeout_s:g}")
        ) from exc
    except OSError as exc:
        raise ParseError(N_("OCR could not start: %(error)s", error=exc.strerror or exc)) from exc
    if proc.returncode == -signal.SIGXCPU:
        raise ParseLimitExceeded(
            N_("OCR of a page used more than %(seconds)s s of CPU time", seconds=cpu_s)
        )
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ParseError(
            N_("OCR failed (%(error)s)", error=detail[-1][:160] if detail else proc.returncode)
        )
    return _from_tsv(proc.stdout.decode("utf-8", "replace"), gray.width, gray.height)


def _fit(image: Image) -> Image:
    pixels = image.width * image.height
    if pixels <= MAX_PIXELS:
        return image
    scale = (MAX_PIXELS / pixels) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size)


def _engine_limits(cpu_s: int) -> None:
    """In the engine's process, before exec: its own CPU cap, and death with the parser."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the wall-clock timeout still holds
        pass


def _joined(left: str, right: str) -> str:
    """Words of one line, or wrapped lines of one paragraph: a space between Latin words,
    none next to a Chinese character (Tesseract reports each character as a word)."""
    if not left or not right:
        return left + right
    if _CJK.match(left[-1]) or _CJK.match(right[0]):
        return left + right
    return f"{left} {right}"


def _from_tsv(tsv: str, width: int, height: int) -> Recognized:
    """Page text from Tesseract's TSV: the lines of a paragraph run on (a space between
    Latin words, none in Chinese), paragraphs and blocks are parted by blank lines; each
    line's span and box are kept."""
    lines: dict[tuple[int, int, int], list[tuple[str, int, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) != 12 or cols[0] != "5":  # level 5 = word
            continue
        word = normalize_text(cols[11]).strip()
        try:
            confidence = float(cols[10])
            block, par, line = int(cols[2]), int(cols[3]), int(cols[4])
            left, top, w, h = (int(c) for c in cols[6:10])
        except ValueError:
            continue
        if not word or confidence < MIN_CONFIDENCE:
            continue
        lines.setdefault((block, par, line), []).append((word, left, top, left + w, top + h))

    text = ""
    boxes: list[TextBox] = []
    previous: tuple[int, int, int] | None = None
    for key, words in lines.items():  # TSV order is Tesseract's reading order
        line_text = ""
        for word, *_ in words:
            line_text = _joined(line_text, word)
        if letters(line_text) == 0:
            continue  # a line of rules or dots
        if previous is not None and key[:2] != previous[:2]:
            text += "\n\n"
        elif previous is not None:
            # A wrapped line of the same paragraph: the break was the printer's, not the
            # writer's. Chinese runs on without a space, so a sentence stays one sentence.
            text = _joined(text, line_text)[: -len(line_text)]
        previous = key
        boxes.append(
            TextBox(
                len(text),
                len(text) + len(line_text),
                min(w[1] for w in words) / width,
                min(w[2] for w in words) / height,
                max(w[3] for w in words) / width,
                max(w[4] for w in words) / height,
            )
        )
        text += line_text
    return Recognized(text, tuple(boxes))
