"""PDF -> one Page per PDF page (1-based), headings from the outline.

pypdf runs in non-strict mode: real-world PDFs are full of small spec violations that
viewers tolerate. pypdf's own decompression limits (75 MB per stream) stop FlateDecode bombs;
the sandbox's memory cap stops the rest. A page whose extraction fails keeps its number
with empty text so the other pages and all page numbers stay right.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PyPdfError
from pypdf.generic import Destination

from ingest.document import Heading, Page, ParsedDocument
from ingest.loaders import pdf_scans, pdfium_text
from ingest.loaders.common import collapse_spaces, normalize_text
from qa.errors import NoExtractableText, ParseError, ParseLimitExceeded, PasswordProtected
from qa.messages import N_

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

log = logging.getLogger(__name__)

#: outlines are optional sugar; a hostile one must not cost more than this many entries
MAX_OUTLINE_ITEMS = 5000


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    try:
        reader = PdfReader(path, strict=False)
        _decrypt(reader)
        page_objects = list(reader.pages)
    except ParseError:
        raise
    except LimitReachedError as exc:
        raise ParseLimitExceeded(N_("PDF exceeds a parser limit: %(error)s", error=exc)) from exc
    except DependencyError as exc:
        raise ParseError(N_("PDF needs an optional decoder: %(error)s", error=exc)) from exc
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # pypdf signals broken structure with its own errors and, in non-strict mode, also
        # with plain Python errors from deep inside its object model.
        malformed = ParseError(N_("malformed PDF: %(error)s", error=_short(exc)))
        return _recovered(path, limits, malformed, exc)

    texts: list[str] = []
    failures: dict[int, str] = {}  # page index -> why pypdf could not read it
    bombs: set[int] = set()  # pages whose streams hit pypdf's decompression limits
    for index, page in enumerate(page_objects):
        try:
            texts.append(normalize_text(page.extract_text()))
        except MemoryError:
            raise
        except Exception as exc:  # one broken page must not lose the others
            log.info("page %d of %s: text extraction failed: %s", index + 1, path.name, exc)
            texts.append("")
            failures[index] = _short(exc)
            if isinstance(exc, LimitReachedError):
                bombs.add(index)

    # PDFium has no decompression limit of its own: a page that hit pypdf's is not handed
    # to it (the sandbox's memory cap would end the parser instead of a clean error).
    if failures and len(failures) == len(texts):
        first, why = next(iter(failures.items()))
        unreadable = ParseError(
            N_(
                "could not extract text from any page (page %(page)s: %(error)s)",
                page=first + 1,
                error=why,
            )
        )
        if bombs:
            raise unreadable
        return _recovered(path, limits, unreadable, None)
    if failures and not bombs:
        _fill_failed_pages(path, texts, failures)
    # Nor does PDFium render such a file for OCR, for the same reason.
    scans = pdf_scans.Scans() if bombs else pdf_scans.read(path, texts, limits)
    _require_text(texts, scans)

    headings = _outline_headings(reader, texts)
    pages = tuple(
        scans.pages.get(i)
        or Page(number=i + 1, text=text, headings=tuple(sorted(headings.get(i, []), key=_key)))
        for i, text in enumerate(texts)
    )
    metadata = {"pages": str(len(pages))}
    if failures:
        metadata["failed_pages"] = ", ".join(str(i + 1) for i in failures if i not in scans.pages)
    return ParsedDocument(kind="pdf", pages=pages, title=_title(reader), metadata=metadata)


def _require_text(texts: list[str], scans: pdf_scans.Scans) -> None:
    """NoExtractableText for a file with no text in its layer nor on its scanned pages."""
    if any(t.strip() for t in texts) or any(p.text.strip() for p in scans.pages.values()):
        return
    raise NoExtractableText(N_("OCR found no text")) if scans.attempted else NoExtractableText()


def _recovered(
    path: Path, limits: ParseLimits, error: ParseError, cause: BaseException | None
) -> ParsedDocument:
    """The document as PDFium reads it when pypdf can't (``error`` if PDFium can't either).

    No outline headings or title: the structure that holds them is what is damaged."""
    texts = pdfium_text.page_texts(path)
    if texts is None:
        raise error from cause
    scans = pdf_scans.read(path, texts, limits)
    _require_text(texts, scans)
    log.info("%s: read by PDFium after pypdf failed (%s)", path.name, error.reason)
    pages = tuple(
        scans.pages.get(i) or Page(number=i + 1, text=text) for i, text in enumerate(texts)
    )
    return ParsedDocument(
        kind="pdf", pages=pages, metadata={"pages": str(len(pages)), "text_engine": "pdfium"}
    )


def _fill_failed_pages(path: Path, texts: list[str], failures: dict[int, str]) -> None:
    """The pages pypdf failed on, read by PDFium where it can (dropped from ``failures``)."""
    other = pdfium_text.page_texts(path)
    if other is None or len(other) != len(texts):
        return
    for index in [i for i in failures if other[i].strip()]:
        texts[index] = other[index]
        del failures[index]


def _decrypt(reader: PdfReader) -> None:
    if not reader.is_encrypted:
        return
    try:
        # Many PDFs are "encrypted" only to set permissions: the user password is empty.
        result = reader.decrypt("")
    except FileNotDecryptedError as exc:
        raise PasswordProtected() from exc
    except DependencyError as exc:
        raise ParseError(
            N_("encrypted PDF uses AES; the 'cryptography' package is needed")
        ) from exc
    if not result:
        raise PasswordProtected()


def _title(reader: PdfReader) -> str | None:
    try:
        info = reader.metadata
        title = info.title if info is not None else None
    except MemoryError:
        raise
    except Exception:
        return None
    if not isinstance(title, str):
        return None
    title = collapse_spaces(normalize_text(title))
    return title or None


def _key(h: Heading) -> int:
    return h.offset


def _walk_outline(items: list[Any], level: int = 1) -> Iterator[tuple[int, Destination]]:
    # pypdf's outline: a list of Destinations where a nested list holds the children of
    # the item before it. An explicit stack keeps hostile nesting from hitting recursion.
    stack: list[tuple[list[Any], int, int]] = [(items, 0, level)]
    while stack:
        current, index, depth = stack.pop()
        if index >= len(current):
            continue
        stack.append((current, index + 1, depth))
        item = current[index]
        if isinstance(item, list):
            stack.append((item, 0, depth + 1))
        elif isinstance(item, Destination):
            yield depth, item


def _outline_headings(reader: PdfReader, texts: list[str]) -> dict[int, list[Heading]]:
    """Outline entries as headings: offset = where the title text occurs on its page, else 0."""
    found: dict[int, list[Heading]] = {}
    try:
        for count, (depth, dest) in enumerate(_walk_outline(reader.outline)):
            if count >= MAX_OUTLINE_ITEMS:
                break
            page_index = reader.get_destination_page_number(dest)
            title = collapse_spaces(normalize_text(str(dest.title or "")))
            if page_index is None or not 0 <= page_index < len(texts) or not title:
                continue
            text = texts[page_index]
            offset = text.find(title)
            if offset < 0:
                # The outline title is not on the page verbatim (hyphenation, numbering): the
                # heading then marks the start of the page, which is where the section starts
                # for citation purposes. Title keeps the outline's wording.
                offset = 0
            found.setdefault(page_index, []).append(Heading(offset, min(depth, 6), title))
    except MemoryError:
        raise
    except Exception as exc:  # outlines are optional: a broken one costs only the headings
        log.info("ignoring unreadable PDF outline: %s", exc)
        return {}
    return found


def _short(exc: BaseException) -> str:
    message = str(exc) or N_("an unexpected structure inside the file")
    return message if len(message) <= 200 else message[:197] + "..."
