"""XLSX -> one page per worksheet: the sheet name (a level-1 heading), then one line per row.

Read-only mode streams rows instead of building the whole grid, and ``data_only=True``
gives the cached values of formulas rather than their source. Caps on rows and cells keep
memory and time bounded for sheets that claim a million rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import openpyxl

from ingest.document import ParsedDocument
from ingest.loaders.common import PageBuilder, collapse_spaces, require_text
from ingest.safety import check_zip_package

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

#: rows looked at per sheet (empty ones included: a sheet can claim a million of them)
MAX_ROWS_PER_SHEET = 100_000
#: non-empty cells kept for the whole workbook
MAX_CELLS = 2_000_000
CELL_SEPARATOR = " | "


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    check_zip_package(path, limits)
    truncated: list[str] = []
    pages = []
    cells_left = MAX_CELLS
    with path.open("rb") as fh:
        # A file object, not the path: openpyxl refuses names without an Excel extension,
        # and our blobs are named by hash.
        workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        try:
            for number, sheet in enumerate(workbook.worksheets, start=1):
                page = PageBuilder(number)
                page.add_block(sheet.title, heading_level=1)
                lines: list[str] = []
                for row_index, row in enumerate(sheet.iter_rows(values_only=True)):
                    if row_index >= MAX_ROWS_PER_SHEET or cells_left <= 0:
                        truncated.append(sheet.title)
                        break
                    values = [_cell_text(v) for v in row]
                    while values and not values[-1]:
                        values.pop()
                    if values:
                        cells_left -= len(values)
                        lines.append(CELL_SEPARATOR.join(values))
                page.add_block("\n".join(lines))
                pages.append(page.build())
        finally:
            workbook.close()
    built = tuple(pages)
    # A workbook with only sheet names is as empty as a blank one.
    require_text([p for p in built if p.text.strip() != _first_line(p.text)])
    metadata = {"sheets": str(len(built))}
    if truncated:
        metadata["truncated_sheets"] = ", ".join(truncated)
    title = collapse_spaces(workbook.properties.title or "") or None
    return ParsedDocument(kind="xlsx", pages=built, title=title, metadata=metadata)


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return collapse_spaces(str(value))
