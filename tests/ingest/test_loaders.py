"""Each loader on a generated sample: text, page numbers, headings at exact offsets."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest import loaders
from ingest.document import ParsedDocument
from ingest.sandbox import parse_in_process
from qa.errors import NoExtractableText, PasswordProtected, UnsupportedType
from tests.ingest import samples
from tests.ingest.samples import LIMITS


def assert_headings_exact(document: ParsedDocument) -> None:
    for page in document.pages:
        for heading in page.headings:
            assert page.text[heading.offset :].startswith(heading.title), (page.number, heading)


def headings(document: ParsedDocument) -> list[tuple[int, int, str]]:
    return [(p.number, h.level, h.title) for p in document.pages for h in p.headings]


def test_pdf_pages_keep_numbers_and_outline_headings(tmp_path: Path) -> None:
    document = parse_in_process(samples.make_pdf(tmp_path / "policy.pdf"), LIMITS)
    assert document.kind == "pdf"
    assert document.title == "Travel Policy"
    assert [p.number for p in document.pages] == [1, 2, 3]
    assert "Economy class is required" in document.pages[0].text
    assert document.pages[1].text == ""
    assert "capped at 180 euros" in document.pages[2].text
    assert headings(document) == [(1, 1, "Expenses"), (3, 2, "Hotels")]
    assert_headings_exact(document)


def test_pdf_text_is_normalised(tmp_path: Path) -> None:
    content = b"BT /F1 12 Tf 72 700 Td (Alpha\\000Beta) Tj ET"
    path = tmp_path / "nul.pdf"
    path.write_bytes(samples.page_pdf(content))
    text = parse_in_process(path, LIMITS).pages[0].text
    assert "\x00" not in text
    assert "AlphaBeta" in text


def test_pdf_without_text_layer_is_no_extractable_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.pdf"
    path.write_bytes(samples.page_pdf(b"0 0 m 100 100 l S"))
    with pytest.raises(NoExtractableText, match="scanned"):
        parse_in_process(path, LIMITS)


def test_pdf_encrypted_with_user_password_is_password_protected(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(samples.make_pdf(tmp_path / "plain.pdf")))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    writer.write(path)
    with pytest.raises(PasswordProtected):
        parse_in_process(path, LIMITS)


def test_pdf_encrypted_with_empty_user_password_opens(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(samples.make_pdf(tmp_path / "plain.pdf")))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    path = tmp_path / "permissions-only.pdf"
    writer.write(path)
    document = parse_in_process(path, LIMITS)
    assert "Economy class" in document.pages[0].text


def test_docx_paragraphs_tables_and_headings_in_order(tmp_path: Path) -> None:
    document = parse_in_process(samples.make_docx(tmp_path / "handbook.docx"), LIMITS)
    assert document.kind == "docx"
    assert document.title == "Employee Handbook"
    assert len(document.pages) == 1
    text = document.pages[0].text
    assert text.index("25 days") < text.index("Grade | Days") < text.index("Sick leave")
    assert "Senior | 30" in text
    assert headings(document) == [(1, 1, "Leave"), (1, 2, "Sick leave")]
    assert_headings_exact(document)
    assert document.metadata["pagination"] == "none"


def test_docx_rendered_page_breaks_start_pages(tmp_path: Path) -> None:
    path = samples.make_docx_with_rendered_break(tmp_path / "paged.docx")
    document = parse_in_process(path, LIMITS)
    assert [(p.number, p.text) for p in document.pages] == [
        (1, "First page text."),
        (2, "Second page text."),
    ]


def test_docx_without_text_is_no_extractable_text(tmp_path: Path) -> None:
    import docx

    path = tmp_path / "blank.docx"
    docx.Document().save(str(path))
    with pytest.raises(NoExtractableText):
        parse_in_process(path, LIMITS)


def test_pptx_slides_are_pages_with_title_headings_tables_and_notes(tmp_path: Path) -> None:
    document = parse_in_process(samples.make_pptx(tmp_path / "deck.pptx"), LIMITS)
    assert document.kind == "pptx"
    assert [p.number for p in document.pages] == [1, 2]
    assert headings(document) == [(1, 1, "Quarterly Results"), (2, 1, "Regional Table")]
    assert_headings_exact(document)
    assert "Revenue grew 12 percent." in document.pages[0].text
    assert "Mention the new office." in document.pages[0].text
    assert "North | 42" in document.pages[1].text
    assert document.title == "Quarterly Results"


def test_xlsx_sheets_are_pages_with_values_not_formulas(tmp_path: Path) -> None:
    document = parse_in_process(samples.make_xlsx(tmp_path / "budget.xlsx"), LIMITS)
    assert document.kind == "xlsx"
    assert headings(document) == [(1, 1, "Budget"), (2, 1, "Staff")]
    assert_headings_exact(document)
    budget = document.pages[0].text
    assert "Laptop | 1200" in budget
    assert "Desk | 350.5" in budget
    assert "SUM" not in budget  # data_only: a formula never shows its source
    assert document.pages[1].text.splitlines()[-1] == "Ada"


def test_html_visible_text_headings_title_and_charset(tmp_path: Path) -> None:
    markup = (
        '<html><head><meta charset="windows-1252"><title>Caf\xe9 Guide</title>'
        "<style>body {color: red}</style><script>var secret = 1;</script></head>"
        "<body><h1>Men\xfc  <em>today</em></h1><p>Cr\xe8me br\xfbl\xe9e costs 5\u20ac.</p>"
        "<noscript>enable js</noscript><template><p>hidden</p></template>"
        "<table><tr><th>Dish</th><th>Price</th></tr><tr><td>Soup</td><td>4</td></tr></table>"
        "<h2>Drinks<br>and more</h2><pre>\n  keep   spacing</pre></body></html>"
    )
    path = tmp_path / "menu.html"
    path.write_bytes(markup.encode("cp1252"))
    document = parse_in_process(path, LIMITS)
    text = document.pages[0].text
    assert document.kind == "html"
    assert document.title == "Café Guide"
    assert "Crème brûlée costs 5€." in text
    for hidden in ("secret", "color: red", "enable js", "hidden", "Café Guide"):
        assert hidden not in text
    assert "Dish | Price\nSoup | 4" in text
    assert "  keep   spacing" in text
    assert headings(document) == [(1, 1, "Menü today"), (1, 2, "Drinks and more")]
    assert_headings_exact(document)


def test_markdown_keeps_source_and_finds_atx_and_setext_headings(tmp_path: Path) -> None:
    source = (
        "---\ntitle: front\n---\n"
        "# Onboarding #\n\nWelcome.\n\n"
        "Accounts\n========\n\nAsk IT.\n\n"
        "```bash\n# not a heading\n```\n\n"
        "Laptops\n-------\n\n"
        "### Returning equipment\n- list item\n"
    )
    path = tmp_path / "guide.md"
    path.write_bytes(source.replace("\n", "\r\n").encode())
    document = parse_in_process(path, LIMITS)
    assert document.kind == "markdown"
    assert document.pages[0].text == source
    assert headings(document) == [
        (1, 1, "Onboarding"),
        (1, 1, "Accounts"),
        (1, 2, "Laptops"),
        (1, 3, "Returning equipment"),
    ]
    assert_headings_exact(document)
    assert document.title == "Onboarding"


SAMPLES = {
    "utf-8": "Ünïcödé text: naïve café, 東京, emoji 🙂.",
    "utf-8-sig": "Byte order mark then text: Grüße aus Köln.",
    "utf-16": "UTF-16 with BOM: Grüße, 北京, Ωμέγα.",
    "utf-16-le": "UTF-16 LE without BOM: plain words and Grüße.",
    "utf-16-be": "UTF-16 BE without BOM: plain words and Grüße.",
    "utf-32": "UTF-32 with BOM: Grüße.",
    "cp1252": (
        "Die schöne Frau hat einen Kaffee mit Kuchen gegessen. Sie sagte: „Das war köstlich!“ "
        "und lächelte dabei. Der Preis betrug 15,50 €. L’été était très chaud."
    ),
    "gb18030": (
        "中华人民共和国是位于东亚的国家。首都是北京，最大的城市是上海。"
        "员工手册规定每年有二十天带薪休假，病假需要提前通知经理。"
    ),
    "shift_jis": (
        "日本は東アジアにある島国です。首都は東京で、人口は約一億二千万人です。"
        "従業員は毎年二十日間の有給休暇を取得できます。"
    ),
}


@pytest.mark.parametrize("encoding", sorted(SAMPLES))
def test_text_encodings_round_trip(tmp_path: Path, encoding: str) -> None:
    text = SAMPLES[encoding] + "\nSecond line.\n"
    path = tmp_path / f"{encoding}.txt"
    path.write_bytes(text.encode(encoding))
    document = parse_in_process(path, LIMITS)
    assert document.kind == "text"
    assert document.pages[0].text == text


def test_text_form_feeds_split_pages(tmp_path: Path) -> None:
    path = tmp_path / "report.txt"
    path.write_bytes(b"page one\r\n\x0cpage two\n\x0cpage three\n\x0c")
    document = parse_in_process(path, LIMITS)
    assert [(p.number, p.text.strip()) for p in document.pages] == [
        (1, "page one"),
        (2, "page two"),
        (3, "page three"),
    ]


def test_whitespace_only_text_is_no_extractable_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(b" \n\t\n   ")
    with pytest.raises(NoExtractableText, match="no extractable text"):
        parse_in_process(path, LIMITS)


def _email(tmp_path: Path, html_only: bool = False) -> Path:
    message = EmailMessage()
    message["From"] = "Ana Lima <ana@example.com>"
    message["To"] = "team@example.com"
    message["Date"] = "Tue, 04 Mar 2025 10:00:00 +0000"
    message["Subject"] = "=?utf-8?q?Caf=C3=A9_budget?="
    if html_only:
        message.set_content(
            "<html><body><h1>Plan</h1><p>Budget is 300 \u20ac.</p></body></html>", subtype="html"
        )
    else:
        message.set_content("Budget is 300 \u20ac.\nThanks.")
        message.add_alternative("<p>HTML version should not win.</p>", subtype="html")
    message.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    path = tmp_path / "message.eml"
    path.write_bytes(bytes(message))
    return path


def test_email_headers_plain_body_subject_title_and_attachment_names(tmp_path: Path) -> None:
    document = parse_in_process(_email(tmp_path), LIMITS)
    assert document.kind == "email"
    assert document.title == "Café budget"
    text = document.pages[0].text
    assert text.startswith("From: Ana Lima <ana@example.com>\nTo: team@example.com\n")
    assert "Subject: Café budget" in text
    assert "Budget is 300 €.\nThanks." in text
    assert "HTML version" not in text
    assert "%PDF" not in text
    assert document.metadata["attachments"] == "invoice.pdf"
    assert headings(document) == [(1, 1, "Café budget")]
    assert_headings_exact(document)


def test_email_html_only_body_is_converted_to_text(tmp_path: Path) -> None:
    text = parse_in_process(_email(tmp_path, html_only=True), LIMITS).pages[0].text
    assert "Plan\n\nBudget is 300 €." in text
    assert "<p>" not in text


@pytest.mark.parametrize("kind", ["zip", "ole", "gif", "odt"])
def test_unsupported_kinds_raise_unsupported_type(tmp_path: Path, kind: str) -> None:
    with pytest.raises(UnsupportedType, match=f"unsupported type {kind}"):
        loaders.load(tmp_path / "whatever", kind, LIMITS)


def test_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.docx"
    path.write_bytes(b"")
    with pytest.raises(NoExtractableText, match="empty file"):
        parse_in_process(path, LIMITS)


def _break_xref(path: Path) -> Path:
    """The file with its cross-reference table, trailer and EOF marker overwritten by noise:
    what a truncated copy or a faulty writer leaves; viewers rebuild the table by scanning."""
    import random

    data = bytearray(path.read_bytes())
    start = data.rfind(b"xref")
    data[start:] = bytes(random.Random(7).randrange(256) for _ in range(len(data) - start))
    broken = path.with_name("broken-" + path.name)
    broken.write_bytes(bytes(data))
    return broken


def test_a_pdf_whose_structure_pypdf_refuses_is_read_by_pdfium_page_by_page(
    tmp_path: Path,
) -> None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    broken = _break_xref(samples.make_pdf(tmp_path / "policy.pdf"))
    with pytest.raises(PyPdfError):
        PdfReader(broken, strict=False)
    document = parse_in_process(broken, LIMITS)
    assert document.metadata["text_engine"] == "pdfium"
    assert [p.number for p in document.pages] == [1, 2, 3]
    assert "Economy class is required" in document.pages[0].text
    assert document.pages[1].text == ""
    assert "capped at 180 euros" in document.pages[2].text


def test_a_pdf_neither_engine_can_read_keeps_pypdfs_reason(tmp_path: Path) -> None:
    from qa.errors import ParseError

    path = tmp_path / "noise.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 64)
    with pytest.raises(ParseError) as caught:
        parse_in_process(path, LIMITS)
    assert caught.value.reason.startswith("malformed PDF: ")
    assert "Error" not in caught.value.reason.split(":", 1)[0]


def _without_media(package: Path, out: Path) -> Path:
    """The Office package with its pictures' parts removed (their relationships stay)."""
    import zipfile

    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        dropped = 0
        for item in src.infolist():
            if "/media/" in item.filename:
                dropped += 1
                continue
            dst.writestr(item, src.read(item.filename))
    assert dropped, "the package had no picture to lose"
    return out


@pytest.mark.parametrize("kind", ["docx", "pptx"])
def test_an_office_file_missing_a_picture_keeps_its_text(tmp_path: Path, kind: str) -> None:
    import io

    import docx
    import pptx
    from docx.shared import Inches
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(picture, format="PNG")
    whole = tmp_path / f"whole.{kind}"
    if kind == "docx":
        d = docx.Document()
        d.add_paragraph("Before the picture: the boiler room key is in the red box.")
        picture.seek(0)
        d.add_picture(picture, width=Inches(1))
        d.add_paragraph("After the picture: call facilities on 4455.")
        d.save(str(whole))
    else:
        deck = pptx.Presentation()
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        slide.shapes.title.text = "The boiler room key is in the red box."
        picture.seek(0)
        slide.shapes.add_picture(picture, pptx.util.Inches(1), pptx.util.Inches(2))
        deck.save(str(whole))
    broken = _without_media(whole, tmp_path / f"broken.{kind}")
    document = parse_in_process(broken, LIMITS)
    text = " ".join(p.text for p in document.pages)
    assert "boiler room key is in the red box" in text
    if kind == "docx":
        assert "call facilities on 4455" in text
        assert "media/image1.png" in document.metadata["missing_parts"]
