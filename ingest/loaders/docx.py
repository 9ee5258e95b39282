"""DOCX -> pages of paragraphs and tables, headings from styles and outline levels.

Pages: a DOCX file has no pages, only Word's record of where it last broke them
(``w:lastRenderedPageBreak``). When that record exists it matches the page numbers the
author saw, so we split there; a paragraph that straddles two pages belongs to the page it
starts on. Hard page breaks alone (``w:br w:type="page"``) are NOT used: text overflow
adds pages between them, so counting them would produce page numbers that are wrong, which
is worse for citations than none. Without rendered breaks the document is page 1.
``metadata["pagination"]`` says which case applied.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docx
from docx.oxml.ns import qn
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from ingest.document import ParsedDocument
from ingest.loaders.common import PageBuilder, collapse_spaces, require_text
from ingest.loaders.ooxml import open_package
from ingest.safety import check_zip_package

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_T = qn("w:t")
_RENDERED_BREAK = qn("w:lastRenderedPageBreak")
_OUTLINE_LVL = qn("w:outlineLvl")
_PPR = qn("w:pPr")
_VAL = qn("w:val")
#: outline level 9 means "body text" in Word
_BODY_OUTLINE_LEVEL = 9
#: styles inherit from each other; a cycle in a hostile file must not loop forever
_MAX_STYLE_CHAIN = 20


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    check_zip_package(path, limits)
    document, missing = open_package(path, docx.Document)
    body = document.element.body
    paginate = any(True for _ in body.iter(_RENDERED_BREAK))

    pages = [PageBuilder(1)]
    first_title: str | None = None
    style_levels: dict[str, int | None] = {}
    for block in document.iter_inner_content():
        before, after = _rendered_breaks(block._element) if paginate else (0, 0)
        for _ in range(before):
            pages.append(PageBuilder(len(pages) + 1))
        if isinstance(block, Paragraph):
            level = _heading_level(block, style_levels)
            pages[-1].add_block(block.text, heading_level=level)
            if first_title is None and _style_name(block).lower() == "title":
                first_title = collapse_spaces(block.text) or None
        else:
            pages[-1].add_block(_table_text(block))
        for _ in range(after):
            pages.append(PageBuilder(len(pages) + 1))

    built = tuple(p.build() for p in pages)
    require_text(built)
    core_title = collapse_spaces(document.core_properties.title or "")
    return ParsedDocument(
        kind="docx",
        pages=built,
        title=core_title or first_title,
        metadata={
            "pagination": "rendered page breaks" if paginate else "none",
            **({"missing_parts": ", ".join(missing)} if missing else {}),
        },
    )


def _rendered_breaks(element: Any) -> tuple[int, int]:
    """(breaks before any text, breaks after text) inside one block element."""
    before = after = 0
    seen_text = False
    for node in element.iter(_T, _RENDERED_BREAK):
        if node.tag == _T:
            seen_text = seen_text or bool(node.text and node.text.strip())
        elif seen_text:
            after += 1
        else:
            before += 1
    return before, after


def _style_name(paragraph: Paragraph) -> str:
    try:
        style = paragraph.style
    except (KeyError, ValueError):
        return ""
    return (style.name or "") if style is not None else ""


def _outline_level(element: Any) -> int | None:
    ppr = element.find(_PPR)
    if ppr is None:
        return None
    lvl = ppr.find(_OUTLINE_LVL)
    if lvl is None:
        return None
    try:
        value = int(lvl.get(_VAL, ""))
    except ValueError:
        return None
    return value + 1 if 0 <= value < _BODY_OUTLINE_LEVEL else None


def _heading_level(paragraph: Paragraph, cache: dict[str, int | None]) -> int | None:
    direct = _outline_level(paragraph._p)
    if direct is not None:
        return direct
    try:
        style = paragraph.style
    except (KeyError, ValueError):
        return None
    if style is None:
        return None
    key = style.style_id or style.name or ""
    if key not in cache:
        cache[key] = _style_heading_level(style)
    return cache[key]


def _style_heading_level(style: Any) -> int | None:
    for _ in range(_MAX_STYLE_CHAIN):
        if style is None:
            return None
        name = style.name or ""
        match = _HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        if name.lower() == "title":
            return 1
        level = _outline_level(style.element)
        if level is not None:
            return level
        style = style.base_style
    return None


def _table_text(table: Table) -> str:
    lines: list[str] = []
    for row in table.rows:
        # The row's own <w:tc> elements rather than row.cells: a horizontally merged cell is
        # one element (listed once), and no grid arithmetic can fail on inconsistent spans.
        cells = [collapse_spaces(_Cell(tc, table).text) for tc in row._tr.tc_lst]
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)
