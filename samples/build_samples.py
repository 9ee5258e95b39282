"""Regenerate the PDF and DOCX sample documents from their Markdown sources.

The outputs in ``samples/docs`` are committed; run ``make samples`` after editing a source.
The PDF puts each top-level section on its own page so that page citations are visible in
the demo.
"""

from __future__ import annotations

import re
from pathlib import Path

import docx
from fpdf import FPDF

HERE = Path(__file__).parent
DOCS = HERE / "docs"


def _sections(md: str) -> list[tuple[int, str, list[str]]]:
    """(level, heading, paragraphs) in order; bullet lines stay separate paragraphs."""
    out: list[tuple[int, str, list[str]]] = []
    para: list[str] = []
    for line in md.splitlines():
        m = re.match(r"^(#+)\s+(.*)", line)
        if m:
            if out and para:
                out[-1][2].append(" ".join(para))
            para = []
            out.append((len(m.group(1)), m.group(2).strip(), []))
        elif not line.strip() or line.startswith("- "):
            if para:
                out[-1][2].append(" ".join(para))
            para = [line] if line.startswith("- ") else []
        else:
            para.append(line.strip())
    if para:
        out[-1][2].append(" ".join(para))
    return out


def build_pdf(src: Path, dest: Path) -> None:
    pdf = FPDF(format="A4")
    pdf.set_creator("docqa samples")
    pdf.set_title(src.stem.replace("-", " ").title())
    pdf.set_auto_page_break(auto=True, margin=20)
    for i, (level, title, paras) in enumerate(_sections(src.read_text(encoding="utf-8"))):
        if level <= 2 and (i == 0 or level == 2):
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 18 if level == 1 else 14)
        pdf.multi_cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "", 11)
        for p in paras:
            pdf.multi_cell(0, 6, p, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(dest))


def build_docx(src: Path, dest: Path) -> None:
    document = docx.Document()
    document.core_properties.title = src.stem.replace("-", " ").title()
    for level, title, paras in _sections(src.read_text(encoding="utf-8")):
        document.add_heading(title, level=level)
        for p in paras:
            if p.startswith("- "):
                document.add_paragraph(p[2:], style="List Bullet")
            else:
                document.add_paragraph(p)
    document.save(str(dest))


def main() -> None:
    build_pdf(HERE / "source" / "travel-and-expenses.md", DOCS / "travel-and-expenses.pdf")
    build_docx(HERE / "source" / "it-security-guidelines.md", DOCS / "it-security-guidelines.docx")


if __name__ == "__main__":
    main()
