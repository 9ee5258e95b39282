"""Real files of the shared corpus through ONE sandboxed parser.

Each file must end as a ParsedDocument or a ParseError subclass: never another exception,
never a hang. A table of outcomes is printed (run with ``-s`` to see it). ``make eval``
runs every file (minutes); ``make test`` a fixed slice of small files of every kind.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from ingest.sandbox import ParseLimits, SandboxedParser
from qa.errors import ParseError
from qa.settings import Settings

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PDF_RESOURCES = CORPUS / "pdf" / "pypdf-resources"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not found at {CORPUS}")

#: the CI slice: every n-th file no larger than this, which still holds every kind
SLICE_EVERY = 6
SLICE_MAX_BYTES = 1_000_000


def _corpus_files() -> list[Path]:
    files: list[Path] = []
    for folder in ("pdf", "office"):
        files.extend(sorted(p for p in (CORPUS / folder).rglob("*") if p.is_file()))
    return files


def _outcome_key(error: ParseError) -> str:
    # Group reasons that differ only by numbers, object ids or file-specific detail.
    reason = re.sub(r"\d+", "N", error.reason)
    reason = reason.split(":", 1)[0] if type(error).__name__ == "ParseError" else reason
    return f"{type(error).__name__}: {reason[:70]}"


def _parse_all(files: list[Path]) -> Counter[str]:
    """Parse ``files`` in one sandbox; print the outcome table; fail on any other error."""
    limits = ParseLimits.from_settings(Settings())
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    slowest: list[tuple[float, str]] = []
    with SandboxedParser(limits) as parser:
        for path in files:
            started = time.monotonic()
            try:
                document = parser.parse(path)
                outcomes[f"ok {document.kind}"] += 1
            except ParseError as error:
                outcomes[_outcome_key(error)] += 1
            except Exception as error:  # the point of the test: this must never happen
                unexpected.append(f"{path}: {type(error).__name__}: {error}")
            slowest.append((time.monotonic() - started, str(path.relative_to(CORPUS))))

    print(f"\n{'count':>6}  outcome  ({len(files)} files)")
    for outcome, count in sorted(outcomes.items(), key=lambda item: (-item[1], item[0])):
        print(f"{count:6d}  {outcome}")
    print("slowest:", ", ".join(f"{name} {secs:.1f}s" for secs, name in sorted(slowest)[-3:]))
    assert not unexpected, unexpected
    return outcomes


KINDS = ("pdf", "docx", "pptx", "xlsx", "html", "markdown", "text", "email")


@pytest.mark.eval
def test_every_corpus_file_ends_as_document_or_parse_error() -> None:
    files = _corpus_files()
    assert len(files) > 400, "corpus looks incomplete"
    outcomes = _parse_all(files)
    # Real documents of every supported kind must come through, not just "fail cleanly".
    for kind in KINDS:
        assert outcomes[f"ok {kind}"] >= 3, (kind, outcomes)


def test_a_slice_of_small_corpus_files_ends_as_document_or_parse_error() -> None:
    small = [p for p in _corpus_files() if p.stat().st_size <= SLICE_MAX_BYTES]
    files = small[::SLICE_EVERY]
    outcomes = _parse_all(files)
    assert sum(outcomes.values()) == len(files)
    assert sum(n for outcome, n in outcomes.items() if not outcome.startswith("ok ")) > 0
    for kind in KINDS:
        assert outcomes[f"ok {kind}"] >= 1, (kind, outcomes)


@pytest.mark.skipif(not PDF_RESOURCES.is_dir(), reason="pypdf-resources not in the corpus")
def test_pdf_text_matches_pypdf_reference_text() -> None:
    limits = ParseLimits.from_settings(Settings())
    expected = (PDF_RESOURCES / "crazyones.txt").read_text(encoding="utf-8")
    with SandboxedParser(limits) as parser:
        document = parser.parse(PDF_RESOURCES / "crazyones.pdf")
    got = " ".join(" ".join(p.text for p in document.pages).split())
    assert " ".join(expected.split()) in got
