"""Helpers every loader shares: text clean-up and building pages with heading offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ingest.document import Heading, Page
from qa.errors import NoExtractableText
from qa.messages import N_

_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00\x01-\x08\x0b\x0e-\x1f\x7f]")


def normalize_text(text: str) -> str:
    """Minimal clean-up applied BEFORE any offset is computed.

    Newlines become ``\\n``; NULs and other C0 controls (except tab, newline, form feed) go;
    lone surrogates (broken PDF font maps produce them) become U+FFFD so the text can be
    stored as UTF-8.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return _SURROGATES.sub("\ufffd", text)


def collapse_spaces(text: str) -> str:
    return " ".join(text.split())


def require_text(pages: tuple[Page, ...] | list[Page]) -> None:
    if not any(p.text.strip() for p in pages):
        raise NoExtractableText(N_("no extractable text"))


@dataclass
class PageBuilder:
    """Appends blocks of text to one page and records headings at their exact offsets."""

    number: int
    parts: list[str] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)
    length: int = 0

    def add_block(self, text: str, heading_level: int | None = None) -> None:
        """Add one paragraph-like block (newline-separated from the previous one)."""
        text = normalize_text(text).strip("\n")
        if not text.strip():
            return
        if self.parts:
            self._append("\n")
        if heading_level is not None:
            title = collapse_spaces(text)
            lead = len(text) - len(text.lstrip())
            if title and text[lead:].startswith(title):
                self.headings.append(Heading(self.length + lead, heading_level, title))
            elif title:
                # Multi-line heading: keep its first line as title so offsets stay exact.
                first = text[lead:].split("\n", 1)[0].strip()
                if first:
                    self.headings.append(Heading(self.length + lead, heading_level, first))
        self._append(text)

    def _append(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    @property
    def is_empty(self) -> bool:
        return not self.parts

    def build(self) -> Page:
        return Page(self.number, "".join(self.parts), tuple(self.headings))
