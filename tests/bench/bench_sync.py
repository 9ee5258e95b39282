"""Synced folders: what an unchanged share costs to scan, and what a scan does to questions.

    python -m tests.bench.bench_sync [--files 50000] [--questions 30]

1. A folder of N small files in 100 sub-folders, recorded as a previous scan saw them (the
   rows are written directly: the bench is about the re-scan, not about ingesting N
   documents), so the scan stats every file and hashes none.
2. Questions (the answer service, extractive, over the sample documents) timed alone, then
   while that scan runs on a thread of the same process, as in ``docqa serve``: the ratio
   of their latencies is what a large share costs the people asking.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import insert

from tests.bench.run import REPO, machine

QUESTIONS = [
    "What is the hotel limit in London?",
    "How many days of paid annual leave do employees get?",
    "正式员工每年有多少天带薪年假？",
    "Who approves travel outside Europe?",
    "What must a strong password contain?",
]


def _make_share(root: Path, files: int) -> list[tuple[str, int, int]]:
    then = time.time() - 3600
    rows = []
    for i in range(files):
        rel = f"d{i % 100:02}/note-{i:06}.txt"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Note {i}: nothing changes here.\n")
        os.utime(path, (then, then))
        st = path.stat()
        rows.append((rel, st.st_size, st.st_mtime_ns))
    return rows


Ask = Callable[[str, list[int]], Iterable[object]]


def _latencies(ask: Ask, n: int, cid: int, while_alive: threading.Thread | None) -> list[float]:
    out = []
    for i in range(n):
        if while_alive is not None and not while_alive.is_alive():
            break
        started = time.perf_counter()
        for _ in ask(QUESTIONS[i % len(QUESTIONS)], [cid]):
            pass
        out.append(time.perf_counter() - started)
    return out


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    p50 = statistics.median(values)
    return f"n={len(values):3}  p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--questions", type=int, default=30)
    args = ap.parse_args(argv)
    print(f"machine: {machine()}")

    from ingest.factory import build_ingest_service
    from ingest.folder_sync import FolderSync
    from ingest.runner import run_ingest
    from qa.answering.assembly import build_answer_service
    from qa.library.sync_sources import SyncSources
    from qa.settings import Settings
    from qa.store.db.models import SyncedFile

    with tempfile.TemporaryDirectory(prefix="bench_sync_") as tmp:
        settings = Settings(data_dir=Path(tmp) / "var")
        service = build_ingest_service(settings)
        run_ingest(service, [REPO / "samples" / "docs"], "handbook")
        answers = build_answer_service(settings, db=service.db, embedder=service.embedder)
        cid = service.collection_id("handbook")
        started = time.perf_counter()
        share = Path(tmp) / "share"
        rows = _make_share(share, args.files)
        print(f"{args.files:,} files written in {time.perf_counter() - started:.0f} s")
        source = SyncSources(service.db).add(str(share), "share", interval_s=60)
        with service.db.session() as session:
            session.execute(
                insert(SyncedFile),
                [
                    {
                        "source_id": source.id,
                        "rel_path": rel,
                        "size": size,
                        "mtime_ns": mtime,
                        "sha256": "0" * 64,
                        "document_id": None,
                    }
                    for rel, size, mtime in rows
                ],
            )
            session.commit()

        _latencies(answers.ask, 3, cid, None)  # warm-up
        alone = _latencies(answers.ask, args.questions, cid, None)
        sync = FolderSync(service, settle_s=0)
        report = {}

        def scan() -> None:
            t0 = time.perf_counter()
            result = sync.scan(source.id)
            report["seconds"] = time.perf_counter() - t0
            report["unchanged"] = result.unchanged

        thread = threading.Thread(target=scan)
        thread.start()
        during = _latencies(answers.ask, 10 * args.questions, cid, thread)
        thread.join()
        service.close()

    seconds = report["seconds"]
    print(f"\n== re-scan of an unchanged share of {args.files:,} files (same process)")
    print(
        f"{report['unchanged']:,} unchanged in {seconds:.1f} s: {args.files / seconds:,.0f} files/s"
    )
    print("\n== questions (extractive, sample documents)")
    print(f"alone          {_summary(alone)}")
    print(f"during a scan  {_summary(during)}")
    print(f"p50 ratio {statistics.median(during) / statistics.median(alone):.2f}x")


if __name__ == "__main__":
    main()
