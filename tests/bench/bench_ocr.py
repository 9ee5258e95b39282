"""OCR: accuracy and speed on rendered scans, and what it recovers from the shared corpus.

    python -m tests.bench.bench_ocr [--pages 6] [--corpus]

Pages are real XQuAD paragraphs (English and the parallel Chinese) printed on A4 and
"scanned" at 150 dpi, rotated 0.8 degrees and blurred (tests/ingest/ocr_pages.py). Figures:

- character error rate per language, Tesseract chi_sim+eng (what docqa runs) against the
  page's own single language (what an admin who knew the language could choose);
- pages/s through the product path: an image-only PDF parsed by the sandboxed parser
  (render + OCR), one parser vs two in parallel (two ingestion workers on 2 cores);
- the same text as a text-layer PDF, for the cost of a scanned page against a typed one;
- with --corpus: every file of ../shared/corpus through the sandbox with OCR off, then the
  ones that failed as "no extractable text" again with OCR on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fpdf import FPDF
from PIL.Image import Image

from ingest import ocr
from ingest.sandbox import ParseLimits, SandboxedParser
from qa.errors import NoExtractableText, ParseError
from qa.settings import Settings
from tests.bench.run import CORPUS, machine
from tests.ingest.ocr_pages import FONTS, char_error_rate, render_page, scanned_pdf

#: what docqa serve parses with (the settings' defaults), OCR on
LIMITS = dataclasses.replace(ParseLimits.from_settings(Settings()), ocr=True)
SINGLE = {"en": "eng", "zh": "chi_sim"}


def paragraphs(lang: str, n: int, skip: int = 20) -> list[str]:
    """``n`` paragraphs from the middle of XQuAD (the tests use the first ones)."""
    data = json.loads((CORPUS / "qa" / "xquad" / f"xquad.{lang}.json").read_text("utf-8"))
    out = [p["context"] for art in data["data"] for p in art["paragraphs"]]
    return [str(t) for t in out[skip : skip + n]]


def accuracy(pages: dict[str, list[tuple[str, Image]]]) -> None:
    print("\n== character error rate (150 dpi scans, rotated 0.8 deg, blurred), one thread")
    print(f"{'language':<10}{'pages':>6}{'chi_sim+eng':>14}{'single':>10}{'s/page':>9}")
    for lang, items in pages.items():
        both, single, seconds = [], [], 0.0
        for truth, image in items:
            started = time.perf_counter()
            read = ocr.recognize(image, timeout_s=120, cpu_s=120).text
            seconds += time.perf_counter() - started
            both.append(char_error_rate(truth, read))
            alone = ocr.recognize(image, timeout_s=120, cpu_s=120, languages=(SINGLE[lang],))
            single.append(char_error_rate(truth, alone.text))
        print(
            f"{lang:<10}{len(items):>6}{sum(both) / len(both):>13.2%}"
            f"{sum(single) / len(single):>10.2%}{seconds / len(items):>9.2f}"
        )


def _typed_pdf(texts: list[tuple[str, str]], path: Path) -> None:
    pdf = FPDF()
    pdf.add_font("zh", fname=str(FONTS["zh"]))
    pdf.set_font("zh", size=11)
    for _, text in texts:
        pdf.add_page()
        pdf.multi_cell(w=0, text=text)
    pdf.output(str(path))


def throughput(pages: dict[str, list[tuple[str, Image]]], work: Path) -> None:
    texts = [(lang, t) for lang, items in pages.items() for t, _ in items]
    images = [img for items in pages.values() for _, img in items]
    scan = work / "scan.pdf"
    scan.write_bytes(scanned_pdf(images))
    typed = work / "typed.pdf"
    _typed_pdf(texts, typed)
    n = len(images)

    def parse(parser: SandboxedParser, path: Path) -> int:
        return parser.parse(path, path.name).ocr_pages

    with SandboxedParser(LIMITS) as one, SandboxedParser(LIMITS) as two:
        parse(one, typed)  # warm both children (imports) before timing
        parse(two, typed)
        started = time.perf_counter()
        parse(one, typed)
        typed_s = time.perf_counter() - started
        started = time.perf_counter()
        assert parse(one, scan) == n
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            done = sum(pool.map(lambda p: parse(p, scan), (one, two)))
        double_s = time.perf_counter() - started
    print(f"\n== through the sandboxed parser: a {n}-page PDF, half English, half Chinese")
    print(f"typed (text layer)       {n / typed_s:8.1f} pages/s")
    slower = single_s / typed_s
    print(f"scanned, one parser      {n / single_s:8.2f} pages/s   ({slower:.0f}x typed)")
    print(
        f"scanned, two in parallel {done / double_s:8.2f} pages/s   "
        f"({single_s * 2 / double_s:.2f}x one parser)"
    )


def corpus() -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".json")
    off = dataclasses.replace(LIMITS, ocr=False)
    no_text: list[Path] = []
    started = time.perf_counter()
    with SandboxedParser(off) as parser:
        for path in files:
            try:
                parser.parse(path, path.name)
            except NoExtractableText:
                no_text.append(path)
            except ParseError:
                pass
    print(
        f"\n== shared corpus: {len(files)} files, {len(no_text)} 'no extractable text' "
        f"with OCR off ({time.perf_counter() - started:.0f} s)"
    )
    read, still, pages, ocr_pages, letters = 0, 0, 0, 0, 0
    reasons: dict[str, int] = {}
    started = time.perf_counter()
    with SandboxedParser(LIMITS) as parser:
        for path in no_text:
            try:
                doc = parser.parse(path, path.name)
            except ParseError as exc:
                still += 1
                reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
                continue
            read += 1
            pages += doc.page_count
            ocr_pages += doc.ocr_pages
            letters += sum(ocr.letters(p.text) for p in doc.pages if p.ocr)
    seconds = time.perf_counter() - started
    print(
        f"with OCR on: {read} now read ({ocr_pages} of their {pages} pages by OCR, "
        f"{letters:,} letters), {still} still fail; {seconds:.0f} s"
    )
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>4}  {reason}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=6, help="pages per language")
    ap.add_argument("--corpus", action="store_true", help="also the shared corpus's scans")
    args = ap.parse_args(argv)
    print(f"machine: {machine()}")
    if ocr.engine() is None:
        sys.exit("tesseract with chi_sim is not installed: make ocr")
    pages = {
        lang: [(t, render_page(t, lang)) for t in paragraphs(lang, args.pages)]
        for lang in ("en", "zh")
    }
    accuracy(pages)
    with tempfile.TemporaryDirectory(prefix="bench_ocr_") as tmp:
        throughput(pages, Path(tmp))
    if args.corpus:
        corpus()


if __name__ == "__main__":
    main()
