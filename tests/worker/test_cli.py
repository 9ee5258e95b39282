"""The ``docqa`` command line, run as a real process (the way admins run it)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, corpus_path


def docqa(data_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def db_counts(data_dir: Path) -> tuple[int, int, int, int]:
    with sqlite3.connect(data_dir / "docqa.db") as conn:
        docs = conn.execute("select count(*) from documents").fetchone()[0]
        distinct = conn.execute("select count(distinct sha256) from documents").fetchone()[0]
        chunks = conn.execute("select count(*) from chunks").fetchone()[0]
        statuses = conn.execute(
            "select count(*) from documents where status in ('queued', 'processing')"
        ).fetchone()[0]
    return docs, distinct, chunks, statuses


def test_ingest_collections_docs_delete(tmp_path: Path) -> None:
    data = tmp_path / "var"
    run = docqa(data, "ingest", str(SAMPLES), "--collection", "handbook")
    assert run.returncode == 0, run.stderr
    assert "4 files accounted for" in run.stdout
    assert "indexed" in run.stdout

    listing = docqa(data, "collections")
    assert listing.returncode == 0 and "handbook" in listing.stdout

    docs = docqa(data, "docs", "--collection", "handbook")
    assert "travel-and-expenses.pdf" in docs.stdout and "员工福利指南.md" in docs.stdout
    doc_id = next(
        line.split()[1] for line in docs.stdout.splitlines() if "employee-handbook" in line
    )

    again = docqa(data, "ingest", str(SAMPLES), "--collection", "handbook")
    assert "duplicate" in again.stdout and "0 new chunks" in again.stdout

    deleted = docqa(data, "delete", doc_id)
    assert deleted.returncode == 0, deleted.stderr
    assert "employee-handbook.md" in deleted.stdout

    reindexed = docqa(data, "reindex")
    assert reindexed.returncode == 0 and "handbook" in reindexed.stdout


def test_gc_removes_orphans_reports_and_audits(tmp_path: Path) -> None:
    data = tmp_path / "var"
    orphan = data / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"an original an earlier version left behind")
    (data / "indexes" / "c7" / "versions").mkdir(parents=True)
    run = docqa(data, "gc", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["originals"] == 1 and report["index_dirs"] == ["c7"]
    assert report["freed_bytes"] >= 42 and not orphan.exists()
    with sqlite3.connect(data / "docqa.db") as conn:
        (details,) = conn.execute("select details from audit_events where action = 'gc'").fetchone()
    assert json.loads(details)["originals"] == 1
    again = docqa(data, "gc", "--vacuum")
    assert again.returncode == 0 and "freed 0 bytes" in again.stdout
    with sqlite3.connect(data / "docqa.db") as conn:
        q = "select details from audit_events where action = 'gc' order by id"
        rows = conn.execute(q).fetchall()
    assert [json.loads(d)["vacuumed"] for (d,) in rows] == [False, True]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "x"], "Missing option '--collection'"),
        (["ingest", "x", "--collection", "../etc"], "collection names are"),
        (["docs", "--collection", "nope"], "no collection named 'nope'"),
        (["docs", "--status", "weird"], "Invalid value for '--status'"),
        (["delete"], "name document ids or --collection"),
        (["delete", "abc"], "too short"),
        (["delete", "--collection", "nope", "--yes"], "no collection named 'nope'"),
    ],
)
def test_bad_arguments_get_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    run = docqa(tmp_path / "var", *args)
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert "Traceback" not in run.stderr


def test_missing_path_is_reported_and_the_rest_is_ingested(tmp_path: Path) -> None:
    run = docqa(tmp_path / "var", "ingest", str(tmp_path / "nope"), str(SAMPLES), "-c", "c")
    assert run.returncode == 0, run.stderr
    assert "no such file or folder" in run.stdout
    assert "5 files accounted for" in run.stdout


def test_kill_9_mid_ingest_then_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    paths = [str(SAMPLES), str(corpus_path("office", "python-docx"))]
    reference = tmp_path / "reference"
    started = time.monotonic()
    assert docqa(reference, "ingest", *paths, "-c", "k").returncode == 0
    full_run = time.monotonic() - started
    expected = db_counts(reference)

    seed = random.randrange(1_000_000)
    delay = random.Random(seed).uniform(0.3, 0.9) * full_run
    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "--data-dir",
            str(crashed),
            "ingest",
            *paths,
            "-c",
            "k",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    rerun = docqa(crashed, "ingest", *paths, "-c", "k")
    assert rerun.returncode == 0, rerun.stderr
    assert db_counts(crashed) == expected, f"seed {seed}, killed after {delay:.1f}s"
    assert expected[0] == expected[1], "one document per distinct content"
    assert expected[3] == 0, "nothing left queued or processing"
