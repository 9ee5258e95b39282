"""Embedding throughput: torch float32 vs ONNX Runtime INT8, same texts, same run.

    python -m tests.bench.bench_embed [--n 512] [--repeats 3] [--cache-dir DIR]

Both backends are timed in one process on the same texts, alternating torch and onnx in
each round so background load on the machine hits both alike; the figure is the median
round. Token counts are what the model really sees (truncated to ``max_seq_length``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from qa.retrieval.embedder import Embedder, SentenceTransformerEmbedder, cpu_quant_preset
from qa.settings import PACKAGED_EMBED_MODEL

SCIFACT = Path(__file__).resolve().parents[3] / "shared/corpus/retrieval/scifact/corpus.jsonl"

_FALLBACK = (
    "Employees must submit travel expense reports within thirty days of returning. "
    "Receipts above twenty euros are required, and the manager approves the report in the "
    "portal before finance reimburses it with the next payroll run."
)


def load_texts(n: int, path: Path = SCIFACT) -> list[str]:
    """Up to ``n`` abstracts ("title. text") from the SciFact corpus; a stand-in if absent.

    Abstracts are about chunk-sized (a few hundred tokens), which is what ingestion embeds.
    """
    if not path.is_file():
        return [f"{i}. {_FALLBACK}" for i in range(n)]
    texts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            text = f"{doc.get('title', '')}. {doc.get('text', '')}".strip(" .")
            if text:
                texts.append(text)
            if len(texts) >= n:
                break
    return texts


def machine() -> dict[str, str]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": str(cores), "int8_preset": cpu_quant_preset()}


def _tokens_seen(emb: Embedder, texts: list[str]) -> int:
    # +2 for [CLS]/[SEP]; the model truncates everything beyond max_tokens.
    tok = emb.tokenizer
    return sum(min(tok.count(emb.passage_prefix + t) + 2, emb.max_tokens) for t in texts)


def _timed(emb: Embedder, texts: list[str]) -> float:
    start = time.perf_counter()
    emb.embed_passages(texts)
    return time.perf_counter() - start


def run(
    texts: list[str], settings_cache_dir: Path, *, repeats: int = 3, batch_size: int = 32
) -> dict[str, float]:
    """Passages/s and tokens/s of both backends on ``texts``, and the onnx/torch ratio."""
    if not texts:
        raise ValueError("no texts to embed")
    start = time.perf_counter()
    onnx = SentenceTransformerEmbedder(
        PACKAGED_EMBED_MODEL,
        backend="onnx-int8",
        cache_dir=settings_cache_dir,
        batch_size=batch_size,
    )
    onnx_load_s = time.perf_counter() - start  # includes the export on a fresh cache dir
    torch = SentenceTransformerEmbedder(
        PACKAGED_EMBED_MODEL, cache_dir=settings_cache_dir, batch_size=batch_size
    )
    tokens = _tokens_seen(torch, texts)

    # Warm-up: first calls pay for allocator growth, thread-pool start and kernel selection.
    warm = texts[: 2 * batch_size]
    torch.embed_passages(warm)
    onnx.embed_passages(warm)

    times: dict[str, list[float]] = {"torch": [], "onnx_int8": []}
    for _ in range(repeats):
        times["torch"].append(_timed(torch, texts))
        times["onnx_int8"].append(_timed(onnx, texts))

    out: dict[str, float] = {
        "n_texts": float(len(texts)),
        "mean_tokens": tokens / len(texts),
        "batch_size": float(batch_size),
        "onnx_load_s": onnx_load_s,
    }
    for name, ts in times.items():
        median = statistics.median(ts)
        out[f"{name}_s"] = median
        out[f"{name}_passages_per_s"] = len(texts) / median
        out[f"{name}_tokens_per_s"] = tokens / median
    out["ratio_onnx_over_torch"] = out["onnx_int8_passages_per_s"] / out["torch_passages_per_s"]
    # Other work on the machine slows both backends; the 1-minute load average at the end
    # says how far to trust the absolute figures (the ratio is less sensitive to it).
    out["load_avg_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return out


def _print(result: dict[str, float]) -> None:
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, int8 preset {m['int8_preset']}")
    print(
        f"texts: {int(result['n_texts'])} (mean {result['mean_tokens']:.0f} tokens seen), "
        f"batch {int(result['batch_size'])}, onnx load/export {result['onnx_load_s']:.1f} s, "
        f"load average {result['load_avg_1m']:.2f}"
    )
    for name in ("torch", "onnx_int8"):
        print(
            f"{name:>10}: {result[f'{name}_passages_per_s']:8.1f} passages/s  "
            f"{result[f'{name}_tokens_per_s']:9.0f} tokens/s  ({result[f'{name}_s']:.2f} s)"
        )
    print(f"onnx-int8 / torch: {result['ratio_onnx_over_torch']:.2f}x")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=512, help="number of texts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="ONNX cache (default: a fresh temp dir)"
    )
    args = parser.parse_args(argv)
    # Never reach for a model hub: the packaged model is local.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    texts = load_texts(args.n)
    if args.cache_dir is not None:
        result = run(texts, args.cache_dir, repeats=args.repeats, batch_size=args.batch_size)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
            result = run(texts, Path(tmp), repeats=args.repeats, batch_size=args.batch_size)
    _print(result)
    return result


if __name__ == "__main__":
    main()
