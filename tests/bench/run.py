"""``make bench``: ingestion and embedding throughput, figures printed with the machine.

Benchmarks compare things measured in the same run (ratios), not against fixed thresholds:
timings on a shared 2-core machine vary, ratios much less.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"


def machine() -> str:
    from qa.cpu import cpu_name, int8_instructions

    return (
        f"{cpu_name()}, {os.cpu_count()} cores, int8: {int8_instructions().best}, "
        f"Python {platform.python_version()}"
    )


def bench_ingest() -> dict[str, float]:
    from ingest.factory import build_ingest_service
    from ingest.runner import run_ingest
    from qa.settings import Settings

    slice_ = [
        p
        for p in (
            CORPUS / "pdf" / "py-pdf-sample-files",
            CORPUS / "office" / "python-docx",
            CORPUS / "office" / "python-pptx",
            REPO / "samples" / "docs",
        )
        if p.exists()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        service = build_ingest_service(Settings(data_dir=Path(tmp)))
        service.embedder.embed_passages(["warm-up"])
        started = time.perf_counter()
        report = run_ingest(service, slice_, "bench")
        seconds = time.perf_counter() - started
        service.close()
    pages = sum(r.pages for r in report.results)
    chunks = sum(r.chunks for r in report.results)
    files = len(report.results)
    print(f"\n== ingestion ({', '.join(p.name for p in slice_)})")
    print(f"files {files}, pages {pages}, chunks {chunks}, wall {seconds:.1f}s")
    print(
        f"  {files / seconds:.1f} files/s  {pages / seconds:.1f} pages/s"
        f"  {chunks / seconds:.1f} chunks/s"
    )
    return {"pages_per_s": pages / seconds, "chunks_per_s": chunks / seconds}


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the language model at 2 and 4 layers only (extrapolated), not the whole model",
    )
    args = ap.parse_args(argv)
    print(f"machine: {machine()}")
    bench_ingest()
    from tests.bench import bench_embed

    print("\n== embedding throughput, same texts, same run")
    bench_embed.main(["--n", "256"])

    from tests.bench import bench_sync

    print("\n== synced folders: an unchanged 50,000-file share, and questions during its scan")
    bench_sync.main(["--files", "50000"])

    from tests.bench import bench_ocr

    print("\n== OCR: rendered scans in English and Chinese, scanned vs typed pages")
    bench_ocr.main(["--pages", "6"])

    from tests.bench import bench_llm

    print("\n== language model: our ONNX INT8 builds vs PyTorch bf16, Qwen3-4B shape")
    bench_llm.main([])

    free_gb = shutil.disk_usage(tempfile.gettempdir()).free / 1e9
    print("\n== the whole Qwen3-4B-Instruct-2507 (real folder, random weights), docqa ask")
    if args.quick:
        print("  skipped (--quick)")
    elif free_gb < 30:  # 8 GB of safetensors, 4.2 GB built, its 9 GB prepacked copy
        print(f"  skipped: {free_gb:.0f} GB free in {tempfile.gettempdir()}, 30 GB needed")
    else:
        bench_llm.main(["--full"])

    from tests.bench import bench_priority

    print("\n== priority: questions alone vs while a collection summary runs (tiny model)")
    bench_priority.main([])

    from tests.bench import bench_priority_scaled

    print("\n== priority, scaled mode: questions vs summaries' batch requests on one worker")
    bench_priority_scaled.main([])


if __name__ == "__main__":
    main()
