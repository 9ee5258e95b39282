"""HTML -> one page of visible text, h1-h6 as headings, <title> as the title.

The charset comes from the BOM, then ``<meta charset>`` in the first KiB(s), then
detection (see :mod:`ingest.textdecode`); BeautifulSoup gets a ``str`` so it does not guess
again. The tree is walked with an explicit stack: hostile pages nest thousands deep.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

from ingest.document import Heading, Page, ParsedDocument
from ingest.loaders.common import collapse_spaces, normalize_text, require_text
from ingest.textdecode import decode_bytes

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

_SKIP = frozenset(
    {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas"}
)
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "html",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "legend",
        "option",
    }
)
_CELLS = frozenset({"td", "th"})
_HEADING = re.compile(r"^h([1-6])$")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_IGNORED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    data = path.read_bytes()
    match = _META_CHARSET.search(data[:4096])
    declared = match.group(1).decode("ascii") if match else None
    page, title = html_to_page(decode_bytes(data, declared).text)
    require_text([page])
    return ParsedDocument(kind="html", pages=(page,), title=title)


def html_to_page(markup: str, number: int = 1) -> tuple[Page, str | None]:
    """Visible text of an HTML document as a Page (with headings) and its <title>."""
    with warnings.catch_warnings():
        # Both are hints for humans calling bs4 interactively, not problems with the file.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(normalize_text(markup), "lxml")
    title_tag = soup.find("title")
    title = collapse_spaces(title_tag.get_text()) if title_tag is not None else ""
    writer = _TextWriter()
    _walk(soup, writer)
    return Page(number, writer.text(), tuple(writer.headings)), (title or None)


@dataclass
class _TextWriter:
    """Emits text with collapsed whitespace, so offsets are final the moment they are known."""

    parts: list[str] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)
    length: int = 0
    at_line_start: bool = True
    pending_space: bool = False
    newlines: int = 2  # trailing newlines written so far (2 = nothing to separate from)
    pre_started: bool = False  # HTML drops the newline right after <pre>

    def write(self, text: str, preformatted: bool = False) -> None:
        if preformatted:
            if self.pre_started and text.startswith("\n"):
                text = text[1:]
            self.pre_started = False
            if text:
                self._emit(text)
                self.pending_space = False
            return
        words = text.split()
        if not words:
            self.pending_space = self.pending_space or bool(text)
            return
        if text[0].isspace():
            self.pending_space = True
        for word in words:
            if self.pending_space and not self.at_line_start:
                self._emit(" ")
            self._emit(word)
            self.pending_space = True
        self.pending_space = text[-1].isspace()

    def newline(self, count: int = 1) -> None:
        if self.length == 0:
            return
        while self.newlines < count:
            self._emit("\n")
        self.pending_space = False

    def separator(self, sep: str) -> None:
        if not self.at_line_start:
            self._emit(sep)
        self.pending_space = False

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)
        stripped = text.rstrip("\n")
        self.newlines = self.newlines + len(text) if not stripped else len(text) - len(stripped)
        self.at_line_start = self.newlines > 0 or self.length == 0

    def text(self) -> str:
        return "".join(self.parts).rstrip()


class _End:
    __slots__ = ("part_index", "start", "tag")

    def __init__(self, tag: Tag, start: int, part_index: int) -> None:
        self.tag = tag
        self.start = start
        self.part_index = part_index


def _walk(root: Tag, writer: _TextWriter) -> None:
    stack: list[object] = [root]
    in_pre = 0
    in_heading = 0
    while stack:
        node = stack.pop()
        if isinstance(node, _End):
            name = node.tag.name
            if name == "pre":
                in_pre -= 1
            match = _HEADING.match(name)
            if match:
                in_heading -= 1
                title = "".join(writer.parts[node.part_index :]).strip() if not in_heading else ""
                if title:
                    writer.headings.append(Heading(node.start, int(match.group(1)), title))
            if name in _BLOCK:
                writer.newline(2 if name in {"p", "pre", "table"} or match else 1)
            continue
        if isinstance(node, NavigableString):
            if not isinstance(node, _IGNORED_STRINGS):
                writer.write(str(node), preformatted=in_pre > 0)
            continue
        if not isinstance(node, Tag) or node.name in _SKIP:
            continue
        name = node.name
        if name == "br":
            # Inside a heading a line break would split the title: a space keeps it whole.
            if in_heading:
                writer.write(" ")
            else:
                writer.newline()
            continue
        if name in _BLOCK:
            writer.newline(2 if _HEADING.match(name) else 1)
        elif name in _CELLS:
            writer.separator(" | ")
        if name == "pre":
            in_pre += 1
            writer.pre_started = True
        if _HEADING.match(name):
            in_heading += 1
        writer.pending_space = writer.pending_space and not writer.at_line_start
        stack.append(_End(node, writer.length, len(writer.parts)))
        stack.extend(reversed(node.contents))
