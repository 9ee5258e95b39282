"""Failure reasons shown to users carry no server path (issue 12, defect 5)."""

from __future__ import annotations

import pytest

from qa.reasons import HIDDEN, public_reason


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "could not parse file: FileNotFoundError: [Errno 2] No such file or directory:"
            " '/srv/docqa/var/blobs/4d/ba/4dba'",
            "could not parse file: FileNotFoundError: [Errno 2] No such file or directory:"
            f" '{HIDDEN}'",
        ),
        ("/etc/passwd", HIDDEN),
        ("opened (/tmp/x.pdf), failed", f"opened ({HIDDEN}), failed"),
        ("path=/tmp/x.pdf: bad", f"path={HIDDEN}: bad"),
        ("in ~/docs/a.md.", f"in {HIDDEN}."),
        ("C:\\Users\\me\\a.docx is locked", f"{HIDDEN} is locked"),
    ],
)
def test_paths_are_replaced(raw: str, shown: str) -> None:
    assert public_reason(raw) == shown


@pytest.mark.parametrize(
    "kept",
    [
        "parser crashed (signal 9)",
        "see https://example.org/a/b for help",
        "1/2 of the pages and/or the index",
        "zip bomb: 1000x expansion",
    ],
)
def test_text_without_paths_is_kept(kept: str) -> None:
    assert public_reason(kept) == kept
