"""Scanned documents are answerable: an image-only PDF and a photo of a notice, in English
and Chinese, ingested as the product does (OCR on by default) and answered with citations
to the right page, whose stored line boxes cover the quoted sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from qa.answering.answer_service import AnswerService
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.models import Document, PageText
from tests.ingest.ocr_pages import font_missing, image_bytes, render_page, scanned_pdf
from tests.qa.answer_corpus import answer_service_over

pytestmark = pytest.mark.skipif(font_missing("zh") is not None, reason=str(font_missing("zh")))

COVER = (
    "Facilities handbook, part three. This part describes the buildings of the northern "
    "campus, their opening hours, and whom to call when something breaks."
)
PARKING = (
    "Notice to all staff. From the first of March, the parking garage on Elm Street closes "
    "at 22:00 every night. Badge holders may still leave through the north gate after hours. "
    "Questions go to the facilities desk."
)
VISITORS = (
    "通知：自明年一月一日起，深圳办公室的访客登记改在三楼前台办理，办理时间为上午九点至下午五点。"
    "访客须出示身份证件，并由接待员工陪同进入办公区域。"
)


@pytest.fixture(scope="module")
def answered(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[AnswerService, dict[str, int]]]:
    folder = tmp_path_factory.mktemp("scans")
    (folder / "facilities-scan.pdf").write_bytes(
        scanned_pdf([render_page(COVER, "en"), render_page(PARKING, "en")])
    )
    (folder / "访客通知.jpg").write_bytes(image_bytes([render_page(VISITORS, "zh")], "JPEG"))
    settings = Settings(data_dir=tmp_path_factory.mktemp("answer-scans"))
    assert settings.ocr == "auto"
    service, ids = answer_service_over(settings, embedder, {"facilities": [folder]})
    yield service, ids
    service.db.dispose()


def _ask(service: AnswerService, question: str, cid: int) -> tuple[str, dict[str, Any]]:
    events = [e.to_json() for e in service.ask(question, [cid])]
    answer = "".join(e["text"] for e in events if e["type"] == "token")
    citations = next(e for e in events if e["type"] == "citations")
    return answer, citations


def test_the_scans_are_indexed_as_ocr(answered: tuple[AnswerService, dict[str, int]]) -> None:
    service, _ = answered
    with service.db.session() as s:
        docs = {Path(d.original_name).name: d for d in s.scalars(select(Document))}
        assert {d.status for d in docs.values()} == {"indexed"}
        assert docs["facilities-scan.pdf"].ocr_pages == 2
        assert docs["facilities-scan.pdf"].detected_type == "pdf"
        assert docs["访客通知.jpg"].ocr_pages == 1
        assert docs["访客通知.jpg"].detected_type == "jpeg"
        boxes = s.scalars(select(PageText.boxes)).all()
        assert all(b for b in boxes), "every OCR'd page keeps its line boxes"


@pytest.mark.parametrize(
    ("question", "name", "page", "expected"),
    [
        ("When does the Elm Street parking garage close?", "facilities-scan.pdf", 2, "22:00"),
        ("访客登记在哪里办理？", "访客通知.jpg", 1, "三楼前台"),
    ],
)
def test_a_question_is_answered_from_the_scan_with_its_page(
    answered: tuple[AnswerService, dict[str, int]],
    question: str,
    name: str,
    page: int,
    expected: str,
) -> None:
    service, ids = answered
    answer, citations = _ask(service, question, ids["facilities"])
    assert expected in answer
    first = citations["citations"][0]
    assert Path(first["document_name"]).name == name
    assert first["page_start"] == page
    highlight = next(h for h in citations["highlights"] if h["n"] == first["n"])
    with service.db.session() as s:
        text, boxes = s.execute(
            select(PageText.text, PageText.boxes).where(
                PageText.document_id == highlight["document_id"],
                PageText.number == highlight["page"],
            )
        ).one()
    start, end = highlight["char_start"], highlight["char_end"]
    assert expected in text[start:end]
    covering = [b for b in boxes if b[0] < end and b[1] > start]
    assert covering, "the viewer has boxes to draw over the quoted lines"
