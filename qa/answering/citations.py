"""Citations ``[n]`` in an answer, checked against the sources the model was actually given.

The model may cite a source number that does not exist (``[7]`` with five sources) or
format citations loosely (``[1, 3]``, ``[1][2]``, full-width ``【1】``). Valid ones are mapped
to the document, page span and char span of their passage; invalid ones are removed from the
final text and counted, so a client never shows a link that leads nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qa.retrieval.retriever import Passage

# [1] [1,2] [1, 2] [1，2] 【1】 - up to three digits per number.
_CITATION = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: int
    document_id: str
    document_name: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "document_name": self.document_name,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "char_start": self.char_start,
            "char_end": self.char_end,
        }


@dataclass(frozen=True)
class CitationReport:
    #: valid citations, each source once, in order of first mention
    citations: list[Citation]
    #: how many citation numbers pointed at no source
    invalid: int
    #: the answer with invalid numbers removed (valid ones normalised to ``[n]``)
    text: str


def cited_numbers(text: str) -> list[int]:
    """Every number cited in ``text``, in order, duplicates kept."""
    return [int(n) for m in _CITATION.finditer(text) for n in re.split(r"[,，、]", m.group(1))]


def validate_citations(answer: str, sources: Sequence[Passage]) -> CitationReport:
    seen: dict[int, Citation] = {}
    invalid = 0

    def rewrite(match: re.Match[str]) -> str:
        nonlocal invalid
        kept: list[str] = []
        for raw in re.split(r"[,，、]", match.group(1)):
            n = int(raw)
            if 1 <= n <= len(sources):
                if n not in seen:
                    p = sources[n - 1]
                    seen[n] = Citation(
                        n,
                        p.chunk_id,
                        p.document_id,
                        p.document_name,
                        p.page_start,
                        p.page_end,
                        p.char_start,
                        p.char_end,
                    )
                kept.append(f"[{n}]")
            else:
                invalid += 1
        return "".join(kept)

    text = _CITATION.sub(rewrite, answer)
    # Removing an invalid marker can leave a double space or a space before punctuation.
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r" +([.,;:!?。，；：！？])", r"\1", text)
    return CitationReport(list(seen.values()), invalid, text)
