"""Small generated documents for loader, sniff and sandbox tests (written into tmp_path)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx
from docx.oxml import OxmlElement
from fpdf import FPDF
from pptx.util import Inches

from ingest.sandbox import ParseLimits

MiB = 1024 * 1024

LIMITS = ParseLimits(
    timeout_s=30,
    cpu_s=30,
    memory_mb=1024,
    max_file_bytes=50 * MiB,
    zip_max_entries=1000,
    zip_max_uncompressed_bytes=200 * MiB,
    zip_max_ratio=100.0,
)


def make_pdf(path: Path) -> Path:
    """Three pages: a titled section, a blank page, a sub-section; outline from sections."""
    pdf = FPDF()
    pdf.set_title("Travel Policy")
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.start_section("Expenses", level=0)
    pdf.cell(text="Expenses")
    pdf.ln()
    pdf.multi_cell(w=0, text="Economy class is required for flights under six hours.")
    pdf.add_page()  # intentionally blank page 2
    pdf.add_page()
    pdf.start_section("Hotels", level=1)
    pdf.cell(text="Hotels")
    pdf.ln()
    pdf.multi_cell(w=0, text="Hotel nights are capped at 180 euros in capitals.")
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.core_properties.title = "Employee Handbook"
    document.add_heading("Leave", level=1)
    document.add_paragraph("Employees get 25 days of paid leave.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Grade"
    table.cell(0, 1).text = "Days"
    table.cell(1, 0).text = "Senior"
    table.cell(1, 1).text = "30"
    document.add_heading("Sick leave", level=2)
    document.add_paragraph("Report sickness before 9am.")
    document.save(str(path))
    return path


def make_docx_with_rendered_break(path: Path) -> Path:
    """Two paragraphs with Word's record of a page break at the start of the second."""
    document = docx.Document()
    document.add_paragraph("First page text.")
    second = document.add_paragraph()
    run = second.add_run()
    run._r.append(OxmlElement("w:lastRenderedPageBreak"))
    second.add_run("Second page text.")
    document.save(str(path))
    return path


def make_pptx(path: Path) -> Path:
    presentation = pptx.Presentation()
    layout = presentation.slide_layouts[1]  # title and content
    slide = presentation.slides.add_slide(layout)
    slide.shapes.title.text = "Quarterly Results"
    slide.placeholders[1].text_frame.text = "Revenue grew 12 percent."
    slide.notes_slide.notes_text_frame.text = "Mention the new office."
    slide2 = presentation.slides.add_slide(presentation.slide_layouts[5])  # title only
    slide2.shapes.title.text = "Regional Table"
    shape = slide2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1))
    cells = shape.table
    cells.cell(0, 0).text = "Region"
    cells.cell(0, 1).text = "Sales"
    cells.cell(1, 0).text = "North"
    cells.cell(1, 1).text = "42"
    presentation.save(str(path))
    return path


def make_xlsx(path: Path) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Budget"
    sheet.append(["Item", "Cost"])
    sheet.append(["Laptop", 1200])
    sheet.append(["Desk", 350.5])
    sheet.append(["Total", "=SUM(B2:B3)"])
    other = workbook.create_sheet("Staff")
    other.append(["Name", "Start"])
    other.append(["Ada", None])
    workbook.save(str(path))
    return path


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def rewrite_zip_entry(source: Path, target: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, data if info.filename == name else zin.read(info))
    return target


def build_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF with a correct xref table from numbered object bodies (object i+1 = objects[i])."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


def page_pdf(content: bytes, stream_dict: bytes = b"") -> bytes:
    """A one-page PDF whose content stream is ``content`` (already encoded as declared)."""
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d %s >>\nstream\n" % (len(content), stream_dict)
            + content
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def _fixed_huffman_zeros(groups: int) -> bytes:
    """Raw deflate (fixed Huffman) for one literal 0 then ``8 * groups`` copies of 258 zeros."""
    bits: list[int] = [1, 1, 0]  # BFINAL=1, BTYPE=01 (fixed Huffman), LSB first

    def code(value: int, width: int) -> None:  # Huffman codes go most significant bit first
        bits.extend((value >> shift) & 1 for shift in range(width - 1, -1, -1))

    code(0b00110000, 8)  # literal 0
    for _ in range(8 * groups):
        code(0b11000101, 8)  # length 258 (code 285)
        code(0, 5)  # distance 1
    code(0, 7)  # end of block
    bits.extend([0] * (-len(bits) % 8))
    return bytes(
        sum(bit << i for i, bit in enumerate(bits[start : start + 8]))
        for start in range(0, len(bits), 8)
    )


def flate_zeros(approx_bytes: int) -> bytes:
    """A zlib stream that inflates to about ``approx_bytes`` zeros, built in milliseconds.

    Eight 13-bit matches are exactly 13 bytes, so after the first two bytes the deflate data
    is periodic: repeat the period instead of running zlib over gigabytes of zeros.
    """
    groups = max(approx_bytes // (258 * 8), 3)
    small = _fixed_huffman_zeros(3)
    period = small[2:15]
    raw = small[:2] + period * (groups - 3) + small[2:]
    total = 1 + 258 * 8 * groups
    adler = ((total % 65521) << 16) | 1  # Adler-32 of `total` zero bytes
    return b"\x78\x01" + raw + adler.to_bytes(4, "big")
