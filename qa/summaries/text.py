"""The text side of summaries: statements, page citations, model output parsing, Markdown.

Pure functions with no database or model, so the rules that make citations trustworthy
can be read (and tested) in one place:

* the model is asked to end each statement with ``(p. 3)`` / ``(pp. 3-4)`` (and, in a
  collection synthesis, ``[D2, p. 3]``); ``parse_statements`` finds whatever it wrote,
  removes it from the text and returns the cited pages separately;
* the caller keeps only cited pages that belong to the text the statement was made from
  (``intersect``), and otherwise attributes the statement itself (``best_overlap``);
* ``format_pages`` and ``render_markdown`` write the citations back in one format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qa.retrieval.lexical import analyze

MAX_STATEMENT_CHARS = 600

GENERATIVE_LABEL = (
    "Summary written by the language model from the document text; every statement "
    "cites the pages it comes from."
)
EXTRACTIVE_LABEL = (
    "Extractive summary (no language model is configured): the most central sentences, "
    "quoted from the documents with their pages."
)


@dataclass(frozen=True)
class Span:
    """Where a quoted (extractive) statement sits: a page and char offsets in its text."""

    page: int
    char_start: int
    char_end: int


@dataclass(frozen=True)
class Statement:
    text: str
    document_id: str
    document_name: str
    pages: tuple[int, ...]
    #: only for sentences quoted verbatim (extractive): the viewer highlights exactly this
    span: Span | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "document_id": self.document_id,
            "document_name": self.document_name,
            "pages": list(self.pages),
        }
        if self.span is not None:
            out["span"] = {
                "page": self.span.page,
                "char_start": self.span.char_start,
                "char_end": self.span.char_end,
            }
        return out


@dataclass
class Parsed:
    """One statement as the model wrote it, its citations taken out of the text."""

    text: str
    #: (low, high) page ranges the model cited, in the order written
    ranges: list[tuple[int, int]] = field(default_factory=list)
    #: document numbers (``D2``) the model cited, in a collection synthesis
    documents: list[int] = field(default_factory=list)


# -- pages ------------------------------------------------------------------------------------


def format_pages(pages: Iterable[int]) -> str:
    """``p. 3``, ``pp. 3-4``, ``pp. 3-4, 7`` (sorted, consecutive pages as ranges)."""
    nums = sorted(set(pages))
    if not nums:
        return ""
    parts: list[str] = []
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ("p. " if len(nums) == 1 else "pp. ") + ", ".join(parts)


def intersect(ranges: Sequence[tuple[int, int]], allowed: Iterable[int]) -> tuple[int, ...]:
    """The allowed pages inside the cited ranges (a range is never expanded blindly, so
    "pp. 1-99999" costs nothing and cites only pages that exist)."""
    return tuple(sorted(p for p in set(allowed) if any(lo <= p <= hi for lo, hi in ranges)))


# -- parsing model output ------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*•·‣–]|\d{1,2}[.)])\s+(.*\S)\s*$")
_ONE = r"\d{1,6}(?:\s*(?:-|–|—|to)\s*\d{1,6})?"  # 3 or 3-4
_NUMS = rf"{_ONE}(?:\s*(?:,|&|and)\s*{_ONE})*"  # 3-4, 7 and 9
_PAGE_REF = re.compile(rf"\b(?:pp?|pages?|pg)\.?\s*({_NUMS})", re.IGNORECASE)
_DOC_REF = re.compile(r"\bD\s?(\d{1,4})\b")
_GROUP = re.compile(r"[(\[]([^()\[\]]{0,120})[)\]]")
_TRAILING_REF = re.compile(
    rf"[\s,;:–-]*\b(?:pp?|pages?|pg)\.?\s*{_NUMS}\s*[.;]?\s*$", re.IGNORECASE
)
_LEADING_DOC = re.compile(r"^\s*\[?D\s?\d{1,4}\]?[:.)\s-]*")
_RANGE = re.compile(r"(\d{1,6})(?:\s*(?:-|–|—|to)\s*(\d{1,6}))?")


def _ranges(nums: str) -> list[tuple[int, int]]:
    out = []
    for m in _RANGE.finditer(nums):
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        out.append((min(lo, hi), max(lo, hi)))
    return out


def clean(text: str) -> str:
    """One line, no markdown emphasis, bounded length."""
    text = re.sub(r"\s+", " ", text.replace("**", "").replace("__", "")).strip()
    text = re.sub(r" ([.,;:!?])", r"\1", text)  # the space a removed citation left
    text = re.sub(r"^(?:#+|[-*•>])\s+", "", text)
    if len(text) > MAX_STATEMENT_CHARS:
        text = text[: MAX_STATEMENT_CHARS - 1].rstrip() + "…"
    return text


def parse_statement(line: str) -> Parsed | None:
    """Split one line into its text and the citations the model put in it."""
    parsed = Parsed("")

    def cut(m: re.Match[str]) -> str:
        inside = m.group(1)
        pages = [r for pm in _PAGE_REF.finditer(inside) for r in _ranges(pm.group(1))]
        docs = [int(d) for d in _DOC_REF.findall(inside)]
        if not pages and not docs:
            return m.group(0)  # an ordinary parenthesis, part of the statement
        parsed.ranges.extend(pages)
        parsed.documents.extend(docs)
        return " "

    text = _GROUP.sub(cut, line)
    trailing = _TRAILING_REF.search(text)
    if trailing is not None:
        parsed.ranges.extend(
            r for pm in _PAGE_REF.finditer(trailing.group(0)) for r in _ranges(pm.group(1))
        )
        text = text[: trailing.start()]
    lead = _LEADING_DOC.match(text)
    if lead is not None and lead.group(0).strip():
        parsed.documents.extend(int(d) for d in _DOC_REF.findall(lead.group(0)))
        text = text[lead.end() :]
    text = clean(text).rstrip(" ,;:–-")
    if len(text) < 3 or not any(ch.isalnum() for ch in text):
        return None
    parsed.text = text
    return parsed


def parse_statements(output: str, limit: int) -> list[Parsed]:
    """Statements from a model's answer: its bullet lines, or else its non-empty lines."""
    lines = output.splitlines()
    bullets = [m.group(1) for line in lines if (m := _BULLET.match(line))]
    candidates = bullets or [line for line in lines if line.strip()]
    out: list[Parsed] = []
    for line in candidates:
        parsed = parse_statement(line)
        if parsed is not None and not any(p.text == parsed.text for p in out):
            out.append(parsed)
        if len(out) == limit:
            break
    return out


def best_overlap(text: str, candidates: Sequence[str]) -> int | None:
    """Index of the candidate sharing the most terms with ``text`` (None if none shares any).

    Page numbers are left out of the comparison: "(p. 3)" must not match a passage
    because it happens to contain a 3.
    """
    terms = {t for t in analyze(text) if not t.isdigit()}
    if not terms:
        return None
    best, best_score = None, 0
    for i, cand in enumerate(candidates):
        score = len(terms & set(analyze(cand)))
        if score > best_score:
            best, best_score = i, score
    return best


# -- Markdown --------------------------------------------------------------------------------


def _line(statement: dict[str, Any], with_document: bool) -> str:
    cite = format_pages(statement["pages"])
    if with_document:
        cite = f"{statement['document_name']}, {cite}" if cite else statement["document_name"]
    text = statement["text"].replace("\n", " ")
    return f"- {text} ({cite})" if cite else f"- {text}"


def render_markdown(result: dict[str, Any]) -> str:
    """The downloadable Markdown of a summary result (``SummaryService`` output)."""
    lines = [f"# {result['title']}", "", f"_{result['label']}_", ""]
    if result["kind"] == "collection":
        lines += ["## Across the collection", ""]
        lines += [_line(s, True) for s in result["statements"]]
        for doc in result.get("documents", []):
            lines += ["", f"## {doc['document_name']}", ""]
            lines += [_line(s, False) for s in doc["statements"]]
        skipped = result.get("skipped", [])
        if skipped:
            lines += ["", "## Not summarized", ""]
            lines += [f"- {d['document_name']} ({d['status']})" for d in skipped]
    else:
        lines += [_line(s, False) for s in result["statements"]]
    return "\n".join(lines).rstrip() + "\n"
