"""Synced folders (ingest/folder_sync.py, docqa sync): a real folder tree changed between
scans follows into its collection: adds, edits, deletes and renames (a rename is not parsed
again), with what a share holds besides documents left alone; one scan per source at a
time; a scan killed with SIGKILL resumes to the state an uninterrupted scan reaches."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.factory import build_ingest_service
from ingest.folder_sync import FolderSync, ScanReport
from ingest.pipeline import IngestService
from qa.errors import InvalidInput, NotFound
from qa.library.sync_sources import SyncSources, parse_interval
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.models import Chunk, Document, SyncedFile, SyncSource


@pytest.fixture()
def service(tmp_path: Path, embedder: Embedder) -> Iterator[IngestService]:
    svc = build_ingest_service(Settings(data_dir=tmp_path / "var"), embedder)
    yield svc
    svc.close()


def write(path: Path, text: str, age_s: float = 60) -> Path:
    """A file last written ``age_s`` ago (older than the settle time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def scan(sync: FolderSync, source_id: int) -> ScanReport:
    report = sync.scan(source_id)
    for doc_id in report.pending:
        sync.service.process(doc_id)
    return report


def documents(service: IngestService) -> dict[str, tuple[str, str, str]]:
    """name -> (id, status, sha256)"""
    with service.db.session() as s:
        return {d.original_name: (d.id, d.status, d.sha256) for d in s.scalars(select(Document))}


def test_a_folder_follows_adds_edits_deletes_and_renames(
    service: IngestService, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    write(share / "a" / "one.md", "# One\n\nThe first note is about lighthouses.\n")
    write(share / "a" / "b" / "two.txt", "The second note is about harbours.\n")
    write(share / "three.md", "# Three\n\nThe third note is about ferries and tides.\n")
    source = SyncSources(service.db).add(str(share), "share", interval_s=60)
    sync = FolderSync(service, settle_s=5)

    first = scan(sync, source.id)
    assert (first.status, first.added, len(first.pending)) == ("ok", 3, 3)
    docs = documents(service)
    assert set(docs) == {"share/a/one.md", "share/a/b/two.txt", "share/three.md"}
    assert {status for _, status, _ in docs.values()} == {"indexed"}
    three_id = docs["share/three.md"][0]
    with service.db.session() as s:
        three_chunks = set(s.scalars(select(Chunk.id).where(Chunk.document_id == three_id)))

    write(share / "a" / "b" / "two.txt", "The second note now says the harbour closed.\n")
    (share / "moved").mkdir()
    (share / "three.md").rename(share / "moved" / "three-renamed.md")
    (share / "a" / "one.md").unlink()
    write(share / "four.md", "# Four\n\nA fourth note about canals.\n")
    now = time.time() - 30  # touched: a new mtime, the same bytes
    os.utime(share / "moved" / "three-renamed.md", (now, now))

    second = scan(sync, source.id)
    assert second.counts() == {
        "added": 1,
        "changed": 1,
        "renamed": 1,
        "deleted": 1,
        "unchanged": 0,
        "settling": 0,
        "skipped": 0,
        "errors": 0,
    }, second
    assert len(second.pending) == 2, "the rename is not parsed again"
    docs = documents(service)
    assert set(docs) == {"share/a/b/two.txt", "share/moved/three-renamed.md", "share/four.md"}
    assert docs["share/moved/three-renamed.md"][0] == three_id
    with service.db.session() as s:
        kept = set(s.scalars(select(Chunk.id).where(Chunk.document_id == three_id)))
        two = s.scalars(
            select(Chunk.text).join(Document).where(Document.original_name == "share/a/b/two.txt")
        ).all()
    assert kept == three_chunks, "the renamed document keeps its chunks and vectors"
    assert any("harbour closed" in t for t in two), "the edit replaced the old version"

    third = scan(sync, source.id)
    assert third.counts()["unchanged"] == 3
    assert sum(third.counts().values()) == 3 and not third.pending
    view = SyncSources(service.db).get(source.id)
    assert view.last_status == "ok" and view.last_finished_at is not None
    assert view.last_counts == {
        "unchanged": 3,
        **{k: 0 for k in third.counts() if k != "unchanged"},
    }


def test_what_a_share_holds_besides_documents_is_left_alone(
    service: IngestService, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    write(share / "keep.md", "# Keep\n\nThis note about gardens is indexed.\n")
    write(share / ".hidden.md", "# Hidden\n\nnot indexed\n")
    write(share / "~$lock.docx", "lock")
    write(share / "notes.log", "a log file the include pattern leaves out")
    (share / "loop").symlink_to(share, target_is_directory=True)  # a symbolic link loop
    (share / "dangling.md").symlink_to(share / "nowhere.md")
    os.mkfifo(share / "pipe.md")  # reading it would block the scan
    fresh = share / "still-writing.md"
    fresh.write_text("# Busy\n\nA note about kites, still being written.\n")
    source = SyncSources(service.db).add(str(share), "share", include=["*.md"], interval_s=60)
    sync = FolderSync(service, settle_s=30)

    report = scan(sync, source.id)
    assert (report.added, report.skipped, report.settling, report.errors) == (1, 1, 1, 1)
    assert report.status == "errors" and "dangling.md" in (report.error or "")
    assert set(documents(service)) == {"share/keep.md"}

    later = FolderSync(service, settle_s=30, clock=lambda: time.time() + 60)
    assert scan(later, source.id).added == 1, "a settled file is taken by the next scan"
    assert set(documents(service)) == {"share/keep.md", "share/still-writing.md"}


#: root reads any file whatever its mode; without these two capabilities it may not
#: (setpriv is util-linux's, on every Debian)
WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_file_is_an_error_and_keeps_its_document(tmp_path: Path) -> None:
    """A real permission-denied file (the scan runs without the capabilities that let root
    read anything): counted as an error, the others go on, its old document stays."""
    share, data = tmp_path / "share", tmp_path / "var"
    locked = write(share / "locked.md", "# Locked\n\nA note about bells.\n")
    write(share / "open.md", "# Open\n\nA note about doors.\n")
    as_user = WITHOUT_DAC if os.geteuid() == 0 else []
    add = _docqa(data, "sync", "add", str(share), "-c", "share")
    assert add.communicate(timeout=120) and add.returncode == 0
    first = _scan_json(data, as_user)
    assert (first["added"], first["errors"]) == (2, 0)
    write(locked, "# Locked\n\nChanged, then locked away.\n")
    locked.chmod(0)
    try:
        second = _scan_json(data, as_user)
    finally:
        locked.chmod(0o644)
    assert (second["errors"], second["deleted"], second["status"]) == (1, 0, "errors")
    assert "locked.md" in second["error"] and "Permission denied" in second["error"]
    docs, _ = _state(data)
    assert {name for name, _, _ in docs} == {"share/locked.md", "share/open.md"}


def _scan_json(data: Path, prefix: list[str]) -> dict[str, object]:
    import json

    run = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "cli.main",
            "--data-dir",
            str(data),
            "sync",
            "run",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stderr
    (report,) = json.loads(run.stdout)
    return dict(report)


def test_a_missing_folder_fails_the_scan_and_deletes_nothing(
    service: IngestService, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    write(share / "one.md", "# One\n\nA note about bridges.\n")
    source = SyncSources(service.db).add(str(share), "share", interval_s=60)
    sync = FolderSync(service, settle_s=5)
    assert scan(sync, source.id).added == 1
    share.rename(tmp_path / "unmounted")  # the share was not mounted this time
    report = scan(sync, source.id)
    assert report.status == "failed" and "missing" in (report.error or "")
    assert set(documents(service)) == {"share/one.md"}


def test_one_scan_per_source_at_a_time_and_a_dead_one_is_taken_over(
    service: IngestService, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    write(share / "one.md", "# One\n\nA note about owls.\n")
    source = SyncSources(service.db).add(str(share), "share", interval_s=60)
    with service.db.session() as s:  # a scan that holds the source (alive, or dead)
        row = s.get(SyncSource, source.id)
        assert row is not None
        row.scan_token, row.scan_heartbeat_at = "someone", None
        s.commit()
    sync = FolderSync(service, settle_s=5, lease_s=60)
    with service.db.session() as s:
        row = s.get(SyncSource, source.id)
        assert row is not None
        from qa.store.db.models import utcnow

        row.scan_heartbeat_at = utcnow()
        s.commit()
    assert sync.scan(source.id).status == "busy"
    assert source.id not in sync.due()
    later = FolderSync(service, settle_s=5, lease_s=60, clock=lambda: time.time() + 120)
    assert source.id in later.due()
    assert scan(later, source.id).added == 1, "the lease ran out: the dead scan's source is taken"


def test_sources_refuse_bad_settings(service: IngestService, tmp_path: Path) -> None:
    sources = SyncSources(service.db)
    with pytest.raises(InvalidInput, match="no folder at"):
        sources.add(str(tmp_path / "nope"), "share")
    with pytest.raises(InvalidInput, match="interval"):
        parse_interval("5x")
    with pytest.raises(InvalidInput, match="between 60 s"):
        parse_interval("10s")
    assert parse_interval("10m") == 600 and parse_interval("2h") == 7200
    with pytest.raises(NotFound, match="no synced folder"):
        sources.remove(999)
    with pytest.raises(InvalidInput, match="patterns"):
        sources.add(str(tmp_path), "share", include=["*"] * 51)


def _docqa(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--data-dir", str(data), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def _state(data: Path) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    with sqlite3.connect(data / "docqa.db") as conn:
        docs = set(conn.execute("select original_name, sha256, status from documents"))
        files = set(conn.execute("select rel_path, sha256 from synced_files"))
    return docs, files


def test_a_scan_killed_mid_way_resumes_to_the_uninterrupted_state(tmp_path: Path) -> None:
    share = tmp_path / "share"
    for i in range(24):
        write(share / f"d{i // 8}" / f"note-{i:02}.md", f"# Note {i}\n\nNote {i} is about {i}.\n")
    slow = {"DOCQA_SYNC_FILES_PER_S": "4", "DOCQA_SYNC_SETTLE_S": "5"}
    state = {}
    for name in ("killed", "control"):
        data = tmp_path / name
        add = _docqa(data, "sync", "add", str(share), "-c", "notes")
        _, err = add.communicate(timeout=120)
        assert add.returncode == 0, err
        if name == "killed":
            run = _docqa(data, "sync", "run", env=slow)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.2)
                if (data / "docqa.db").exists():
                    with sqlite3.connect(data / "docqa.db") as conn:
                        if conn.execute("select count(*) from synced_files").fetchone()[0] >= 6:
                            break
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=30)
            _, files = _state(data)
            assert 6 <= len(files) < 24, "killed in the middle of the scan"
            with sqlite3.connect(data / "docqa.db") as conn:
                held = conn.execute("select scan_token from sync_sources").fetchone()[0]
            assert held is not None, "the dead scan still holds its source"
            env = {"DOCQA_SYNC_SETTLE_S": "5"}
            # As if its 5-minute lease had run out: the next scan takes the source over.
            with sqlite3.connect(data / "docqa.db") as conn:
                conn.execute("update sync_sources set scan_heartbeat_at = '2000-01-01 00:00:00'")
        else:
            env = {"DOCQA_SYNC_SETTLE_S": "5"}
        again = _docqa(data, "sync", "run", "--json", env=env)
        _, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        state[name] = _state(data)
    assert state["killed"] == state["control"]
    docs, files = state["control"]
    assert len(files) == 24 and {status for _, _, status in docs} == {"indexed"}


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "var"
    cases = [
        (["sync", "add", str(tmp_path / "nope"), "-c", "x"], "no folder at"),
        (["sync", "add", str(tmp_path), "-c", "x", "--interval", "5x"], "an interval is"),
        (["sync", "add", str(tmp_path), "-c", "../etc"], "collection names are"),
        (["sync", "remove", "999"], "no synced folder with id 999"),
        (["sync", "run", "999"], "no synced folder with id 999"),
    ]
    for args, message in cases:
        run = _docqa(data, *args)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 1, (args, out, err)
        assert message in out + err and "Traceback" not in err, (args, out, err)
    listing = _docqa(data, "sync", "list")
    out, err = listing.communicate(timeout=120)
    assert listing.returncode == 0 and "synced folders" in out
    with sqlite3.connect(data / "docqa.db") as conn:
        assert conn.execute("select count(*) from sync_sources").fetchone()[0] == 0
    assert SyncedFile.__tablename__ == "synced_files"
