"""Markdown -> the source text as one page, ATX and setext headings at their offsets.

The page text is the file's text (newlines normalised only), so a cited offset points at
the same characters the author wrote. Lines inside fenced code blocks and YAML front matter
are never headings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.document import Heading, Page, ParsedDocument
from ingest.loaders.common import normalize_text, require_text
from ingest.textdecode import decode_bytes

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Lines that cannot be the text of a setext heading (lists, quotes, tables, other blocks).
_NOT_PARAGRAPH = re.compile(r"^ {0,3}(?:[-*+>|]|\d+[.)]\s|#|`{3}|~{3})|^ {4}|^\t")


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    text = normalize_text(decode_bytes(path.read_bytes()).text)
    page = Page(1, text, markdown_headings(text))
    require_text([page])
    title = next((h.title for h in page.headings if h.level == 1), None)
    return ParsedDocument(kind="markdown", pages=(page,), title=title)


def markdown_headings(text: str) -> tuple[Heading, ...]:
    headings: list[Heading] = []
    lines = text.split("\n")
    offsets = []
    position = 0
    for line in lines:
        offsets.append(position)
        position += len(line) + 1

    start = _front_matter_end(lines)
    fence: str | None = None
    previous_is_paragraph = False
    for index in range(start, len(lines)):
        line = lines[index]
        fence_match = _FENCE.match(line)
        if fence is not None:
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
            ):
                fence = None
            previous_is_paragraph = False
            continue
        if fence_match:
            fence = fence_match.group(1)
            previous_is_paragraph = False
            continue
        atx = _ATX.match(line)
        if atx:
            title = (atx.group(2) or "").strip()
            if title:
                headings.append(
                    Heading(offsets[index] + line.index(title), len(atx.group(1)), title)
                )
            previous_is_paragraph = False
            continue
        setext = _SETEXT.match(line)
        if setext and previous_is_paragraph:
            above = lines[index - 1]
            title = above.strip()
            level = 1 if setext.group(1)[0] == "=" else 2
            headings.append(Heading(offsets[index - 1] + above.index(title), level, title))
            previous_is_paragraph = False
            continue
        previous_is_paragraph = bool(line.strip()) and not _NOT_PARAGRAPH.match(line)
    return tuple(headings)


def _front_matter_end(lines: list[str]) -> int:
    if not lines or lines[0].strip() != "---":
        return 0
    for index in range(1, min(len(lines), 200)):
        if lines[index].strip() in ("---", "..."):
            return index + 1
    return 0
