"""PPTX -> one page per slide: title (a level-1 heading), shape text, tables, notes.

Shapes are read in the slide's z-order (the XML order), which is also the order authoring
tools use for reading order; group shapes are flattened with an explicit stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE

from ingest.document import ParsedDocument
from ingest.loaders.common import PageBuilder, collapse_spaces, require_text
from ingest.loaders.ooxml import open_package
from ingest.safety import check_zip_package

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    check_zip_package(path, limits)
    presentation, _missing = open_package(path, pptx.Presentation)
    pages = []
    for number, slide in enumerate(presentation.slides, start=1):
        page = PageBuilder(number)
        title_shape = slide.shapes.title
        if title_shape is not None and title_shape.has_text_frame:
            page.add_block(title_shape.text_frame.text, heading_level=1)
        for shape in _flatten(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            page.add_block(_shape_text(shape))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                page.add_block("Notes:\n" + notes.text)
        pages.append(page.build())
    built = tuple(pages)
    require_text(built)
    title = collapse_spaces(presentation.core_properties.title or "")
    if not title:
        title = next((h.title for p in built for h in p.headings), "")
    return ParsedDocument(
        kind="pptx", pages=built, title=title or None, metadata={"slides": str(len(built))}
    )


def _flatten(shapes: Any) -> Iterator[Any]:
    stack = [iter(shapes)]
    while stack:
        shape = next(stack[-1], None)
        if shape is None:
            stack.pop()
        elif shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            stack.append(iter(shape.shapes))
        else:
            yield shape


def _shape_text(shape: Any) -> str:
    if getattr(shape, "has_table", False):
        rows = []
        for row in shape.table.rows:
            cells = [collapse_spaces(cell.text) for cell in row.cells]
            if any(cells):
                rows.append(" | ".join(cells))
        return "\n".join(rows)
    if getattr(shape, "has_text_frame", False):
        return str(shape.text_frame.text)
    return ""
