"""What a loader produces: a document as numbered pages of plain text.

Offsets everywhere in docqa are Python ``str`` indices into ``Page.text``; the portal uses
them to highlight the cited passage, so loaders must never rewrite a page's text after
reporting headings against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    """A heading that starts at ``offset`` in its page's text (level 1 = top)."""

    offset: int
    level: int
    title: str


@dataclass(frozen=True)
class TextBox:
    """Where ``text[start:end]`` of an OCR'd page sits on the page image: left, top, right,
    bottom as fractions of its width and height (so it holds at any rendering size)."""

    start: int
    end: int
    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class Page:
    """One page (PDF page, slide, sheet, or the whole text for flowing formats), 1-based."""

    number: int
    text: str
    headings: tuple[Heading, ...] = ()
    #: the page's text was read from its image by OCR; ``boxes`` are its lines
    ocr: bool = False
    boxes: tuple[TextBox, ...] = ()


@dataclass(frozen=True)
class ParsedDocument:
    kind: str  # detected type: "pdf", "docx", "pptx", "xlsx", "html", "markdown", "text", "email"
    pages: tuple[Page, ...]
    title: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def ocr_pages(self) -> int:
        return sum(p.ocr for p in self.pages)

    def has_text(self) -> bool:
        return any(p.text.strip() for p in self.pages)
