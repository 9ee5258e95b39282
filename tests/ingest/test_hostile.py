"""Hostile and broken inputs end as a clean ParseError within the limits, never worse."""

from __future__ import annotations

import dataclasses
import random
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.safety import check_zip_package
from ingest.sandbox import ParseLimits, SandboxedParser, parse_in_process
from qa.errors import (
    HostileFile,
    NoExtractableText,
    ParseError,
    ParseLimitExceeded,
    ParserCrashed,
)
from tests.ingest import samples
from tests.ingest.child_hooks import misbehave

MiB = 1024 * 1024
HOSTILE_LIMITS = ParseLimits(
    timeout_s=20,
    cpu_s=20,
    memory_mb=512,
    max_file_bytes=100 * MiB,
    zip_max_entries=1000,
    zip_max_uncompressed_bytes=200 * MiB,
    zip_max_ratio=100.0,
)


@pytest.fixture(scope="module")
def parser() -> Iterator[SandboxedParser]:
    with SandboxedParser(HOSTILE_LIMITS) as sandboxed:
        yield sandboxed


@pytest.fixture
def misbehaving() -> Iterator[SandboxedParser]:
    limits = dataclasses.replace(HOSTILE_LIMITS, timeout_s=3, cpu_s=1)
    with SandboxedParser(limits, before_parse=misbehave) as sandboxed:
        yield sandboxed


def test_pdf_flate_bomb_fails_cleanly_within_limits(
    parser: SandboxedParser, tmp_path: Path
) -> None:
    bomb = samples.flate_zeros(2 * 1024**3)  # ~13 MB that inflate to 2 GiB of zeros
    path = tmp_path / "bomb.pdf"
    path.write_bytes(samples.page_pdf(bomb, b"/Filter /FlateDecode"))
    started = time.monotonic()
    with pytest.raises(ParseError) as caught:
        parser.parse(path)
    assert time.monotonic() - started < HOSTILE_LIMITS.timeout_s
    assert "Limit reached while decompressing" in caught.value.reason or isinstance(
        caught.value, ParseLimitExceeded
    )


def test_deeply_nested_pdf_arrays_fail_cleanly(parser: SandboxedParser, tmp_path: Path) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "nested.pdf"
    path.write_bytes(
        samples.build_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
                b"<< /Length %d >>\nstream\n" % len(nested) + nested + b"\nendstream",
            ]
        )
    )
    with pytest.raises(ParseError):
        parser.parse(path)
    # the same child (or its replacement) still parses normal files
    assert parser.parse(samples.make_pdf(tmp_path / "ok.pdf")).page_count == 3


def test_deeply_nested_pdf_object_is_read_by_the_second_engine(
    parser: SandboxedParser, tmp_path: Path
) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000  # the font's /Widths: read during extraction
    content = b"BT /F1 12 Tf 72 700 Td (Hello nested) Tj ET"
    path = tmp_path / "nested-object.pdf"
    path.write_bytes(
        samples.build_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
                b" /Resources << /Font << /F1 6 0 R >> >> >>",
                b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
                nested,
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Widths 5 0 R >>",
            ]
        )
    )
    # pypdf gives up on the font; PDFium (the second engine) reads the page without it
    document = parser.parse(path)
    assert document.metadata["text_engine"] == "pdfium"
    # with the glyph widths unreadable PDFium takes repeated letters for overdrawn ones
    assert document.pages[0].text == "Helo nstd"


def test_deeply_nested_page_tree_fails_cleanly(parser: SandboxedParser, tmp_path: Path) -> None:
    depth = 5000  # /Pages nodes each holding the next one
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for number in range(2, depth + 2):
        objects.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % (number + 1))
    objects.append(b"<< /Type /Page /MediaBox [0 0 612 792] >>")
    path = tmp_path / "deep-tree.pdf"
    path.write_bytes(samples.build_pdf(objects))
    with pytest.raises(ParseError):
        parser.parse(path)


def test_zip_bomb_docx_is_hostile(parser: SandboxedParser, tmp_path: Path) -> None:
    source = samples.make_docx(tmp_path / "plain.docx")
    bomb = tmp_path / "bomb.docx"
    samples.rewrite_zip_entry(source, bomb, "word/document.xml", b"")
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/media/padding.bin", bytes(50 * MiB))  # compresses ~1000x
    with pytest.raises(HostileFile, match="zip bomb"):
        parser.parse(bomb)


def test_zip_limits_on_entries_and_total_size(tmp_path: Path) -> None:
    many = samples.make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(20)})
    with pytest.raises(HostileFile, match="20 entries"):
        check_zip_package(many, dataclasses.replace(HOSTILE_LIMITS, zip_max_entries=10))
    incompressible = random.Random(0).randbytes(1_200_000)
    big = samples.make_zip(tmp_path / "big.zip", {"a.bin": incompressible})
    with pytest.raises(HostileFile, match="uncompressed"):
        check_zip_package(big, dataclasses.replace(HOSTILE_LIMITS, zip_max_uncompressed_bytes=MiB))
    check_zip_package(big, HOSTILE_LIMITS)  # within limits: no error


def test_docx_with_external_entity_is_refused(parser: SandboxedParser, tmp_path: Path) -> None:
    source = samples.make_docx(tmp_path / "plain.docx")
    with zipfile.ZipFile(source) as zf:
        original = zf.read("word/document.xml").decode()
    body_start = original.index("<w:body>") + len("<w:body>")
    evil = (
        original[: original.index("<w:document")]
        + '<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + original[original.index("<w:document") : body_start]
        + "<w:p><w:r><w:t>&xxe;</w:t></w:r></w:p>"
        + original[body_start:]
    )
    path = samples.rewrite_zip_entry(
        source, tmp_path / "xxe.docx", "word/document.xml", evil.encode()
    )
    with pytest.raises(HostileFile, match="XML with DTD/entities"):
        parser.parse(path)


def test_file_over_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "large.txt"
    path.write_bytes(b"a" * 2048)
    with pytest.raises(HostileFile, match="file too large"):
        parse_in_process(path, dataclasses.replace(HOSTILE_LIMITS, max_file_bytes=1024))


def test_empty_file_fails_cleanly(parser: SandboxedParser, tmp_path: Path) -> None:
    path = tmp_path / "zero.pdf"
    path.write_bytes(b"")
    with pytest.raises(NoExtractableText, match="empty file"):
        parser.parse(path)


def test_html_named_pdf_parses_as_html(parser: SandboxedParser, tmp_path: Path) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(b"<!doctype html><title>Invoice</title><h1>Total</h1><p>42 EUR</p>")
    document = parser.parse(path)
    assert document.kind == "html"
    assert document.title == "Invoice"
    assert "42 EUR" in document.pages[0].text


def test_truncated_pdf_is_a_parse_error(parser: SandboxedParser, tmp_path: Path) -> None:
    good = samples.make_pdf(tmp_path / "good.pdf").read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good[: len(good) // 3])
    with pytest.raises(ParseError):
        parser.parse(path)


def test_segfaulting_child_is_parser_crashed_and_next_parse_works(
    misbehaving: SandboxedParser, tmp_path: Path
) -> None:
    crash = tmp_path / "segfault.txt"
    crash.write_text("irrelevant")
    with pytest.raises(ParserCrashed, match=f"parser crashed \\(signal {int(signal.SIGSEGV)}\\)"):
        misbehaving.parse(crash)
    fine = tmp_path / "fine.txt"
    fine.write_text("still alive")
    assert misbehaving.parse(fine).pages[0].text == "still alive"


def test_wall_clock_timeout_kills_the_child(misbehaving: SandboxedParser, tmp_path: Path) -> None:
    slow = tmp_path / "sleep.txt"
    slow.write_text("x")
    started = time.monotonic()
    with pytest.raises(ParseLimitExceeded, match="parse timed out after 3s"):
        misbehaving.parse(slow)
    assert time.monotonic() - started < 10
    fine = tmp_path / "fine.txt"
    fine.write_text("after timeout")
    assert misbehaving.parse(fine).pages[0].text == "after timeout"


class _Interrupted(Exception):
    pass


def test_a_parse_interrupted_in_the_caller_is_killed_at_close(tmp_path: Path) -> None:
    """A Celery soft time limit raises inside ``parse`` while the child is mid-file; the
    worker then closes the parser, which must not wait for a child that never reads the
    closed pipe."""
    slow = tmp_path / "sleep.txt"
    slow.write_text("x")
    fine = tmp_path / "fine.txt"
    fine.write_text("warms the child up")

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    sandboxed = SandboxedParser(HOSTILE_LIMITS, before_parse=misbehave)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        sandboxed.parse(fine)  # the child is running: the interrupt lands mid-file
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(_Interrupted):
            sandboxed.parse(slow)
        child = sandboxed.child_pid
        assert child is not None
        started = time.monotonic()
        sandboxed.close()
        assert time.monotonic() - started < 2  # killed, not given 5 s to notice EOF
        assert sandboxed.child_pid is None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sandboxed.close()


def test_cpu_limit_is_reported(tmp_path: Path) -> None:
    limits = dataclasses.replace(HOSTILE_LIMITS, timeout_s=15, cpu_s=1)
    spin = tmp_path / "spin.txt"
    spin.write_text("x")
    with SandboxedParser(limits, before_parse=misbehave) as sandboxed:
        fine = tmp_path / "fine.txt"
        fine.write_text("warm child first, so its import CPU time is not charged to a file")
        sandboxed.parse(fine)
        with pytest.raises(ParseLimitExceeded, match="CPU time limit exceeded"):
            sandboxed.parse(spin)


def test_memory_limit_is_reported(misbehaving: SandboxedParser, tmp_path: Path) -> None:
    hog = tmp_path / "hog.txt"
    hog.write_text("x")
    with pytest.raises(ParseLimitExceeded, match="memory limit exceeded"):
        misbehaving.parse(hog)
    fine = tmp_path / "fine.txt"
    fine.write_text("after memory")
    assert misbehaving.parse(fine).pages[0].text == "after memory"


def test_parser_is_safe_to_share_between_threads(parser: SandboxedParser, tmp_path: Path) -> None:
    paths = []
    for i in range(12):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(f"document number {i}")
        paths.append(path)
    results: dict[int, str] = {}

    def work(index: int) -> None:
        results[index] = parser.parse(paths[index]).pages[0].text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {i: f"document number {i}" for i in range(len(paths))}


def test_child_is_replaced_after_max_files(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello")
    with SandboxedParser(HOSTILE_LIMITS, max_files_per_child=2) as sandboxed:
        pids = []
        for _ in range(3):
            sandboxed.parse(path)
            pids.append(sandboxed.child_pid)
    assert pids[0] is not None and pids[1] is None  # retired right after its 2nd file
    assert pids[2] is not None and pids[2] != pids[0]
