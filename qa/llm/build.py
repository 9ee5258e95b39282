"""``build_model``: a local Hugging Face Qwen3 folder -> ``model.onnx`` + external data.

Streaming by construction: weights are memory-mapped from safetensors and quantized one
tensor (or row block) at a time, appended to ``model.onnx.data``; only the small graph
protobuf is built in memory. Peak RSS is therefore about one float32 weight matrix plus the
graph, whatever the number of layers (see ``tests/bench/bench_llm.py`` for figures).

The output is assembled in a temporary directory next to ``out_dir`` and renamed into place
at the end, so a crash never leaves a half-built model where the service looks for one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnx

from qa.errors import InvalidInput
from qa.llm.accuracy import AccuracyCheck, build_checked
from qa.llm.external_data import ExternalDataWriter
from qa.llm.graph import Int8Kernel, Qwen3GraphBuilder
from qa.llm.kv_quant import KV_CACHES, KVCache, scales
from qa.llm.manifest import MANIFEST, MODEL_FILE, ModelManifest
from qa.llm.safetensors_io import SafetensorsCheckpoint
from qa.llm.spec import Qwen3Spec, read_json_object, read_qwen3_config
from qa.store.fsutil import fsync_path

DEFAULT_CONTEXT = 32768  # what docqa serves; rotary caches are sized for it
COARSE_BLOCK, FINE_BLOCK = 128, 32  # the blockwise kernel's block sizes (auto_block_sizes)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "config.json",
)


@dataclass(frozen=True)
class BuildReport:
    out_dir: Path
    manifest: ModelManifest
    seconds: float
    model_bytes: int
    rejected: tuple[str, ...] = ()  # builds the accuracy check turned down, and why


def auto_block_sizes(spec: Qwen3Spec) -> list[int]:
    """The blockwise kernel's block sizes to try, coarsest first: 128 where it divides every
    matmul's K (hidden, intermediate, attention output), then 32 if the check rejects it.

    Why 128: on the Qwen3-4B shape (AMD EPYC Zen 4, 2 threads; 2- and 4-layer builds,
    extrapolated to 36 layers) MatMulNBits with int8 activations prefills about 30% faster
    and decodes about 25% faster with blocks of 128 than of 32, as it applies a quarter as
    many scales; the accuracy check then decides whether its coarser scales are good enough
    for the weights at hand.
    """
    ks = (spec.hidden_size, spec.intermediate_size, spec.num_heads * spec.head_dim)
    return [COARSE_BLOCK, FINE_BLOCK] if all(k % COARSE_BLOCK == 0 for k in ks) else [FINE_BLOCK]


def _fingerprint(hf_dir: Path, ckpt: SafetensorsCheckpoint) -> str:
    """Hash of config.json and every tensor's name/dtype/shape plus shard sizes.

    Cheap (reads no weights) and changes whenever the checkpoint layout or files change.
    """
    h = hashlib.sha256((hf_dir / "config.json").read_bytes())
    for name in sorted(ckpt.names()):
        h.update(f"{name}:{ckpt.dtype(name)}:{ckpt.shape(name)}".encode())
    for shard in sorted(hf_dir.glob("*.safetensors")):
        h.update(f"{shard.name}:{shard.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _eos_ids(hf_dir: Path, cfg: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    sources: list[object] = [cfg.get("eos_token_id")]
    gen = hf_dir / "generation_config.json"
    if gen.is_file():
        sources.append(read_json_object(gen, "generation config").get("eos_token_id"))
    for src in sources:
        for value in src if isinstance(src, list) else [src]:
            if isinstance(value, int) and value not in ids:
                ids.append(value)
    return ids


def build_model(
    hf_dir: Path,
    out_dir: Path,
    *,
    precision: Literal["int8", "fp32"] = "int8",
    block_size: int | None = None,
    accuracy_level: int = 4,
    context_length: int = DEFAULT_CONTEXT,
    int8_kernel: Int8Kernel = "blockwise",
    check_accuracy: bool = True,
    kv_cache: KVCache = "fp32",
    progress: Callable[[int, int, str], None] | None = None,
) -> BuildReport:
    """Build the ONNX model for ``hf_dir`` into ``out_dir`` (replaced atomically if present).

    ``precision="int8"``: INT8 weights. ``int8_kernel="blockwise"`` (default) uses
    MatMulNBits (``block_size`` along K, ``accuracy_level=4`` = int8 activations x int8
    weights); ``"dynamic"`` uses per-channel weights with DynamicQuantizeMatMul, ~2.5x faster
    prefill but activations quantized per tensor (check answer quality on the real weights
    before choosing it). The tied embedding / lm_head is block-wise either way.
    ``"fp32"``: float32 weights, for parity tests against PyTorch.

    ``check_accuracy`` (INT8 only; see ``accuracy.py``): before it replaces anything, the
    built graph is compared with a float32 reference on fixed calibration text. A failing
    dynamic-kernel build gets its offending layers rebuilt blockwise (a mixed build,
    ``manifest.blockwise_layers``); one that still fails raises ``ModelAccuracyError``.

    ``kv_cache="int8"``: the KV cache is int8 with per-channel scales fixed from the float32
    reference on the calibration text (``kv_quant``), a quarter of float32's memory; that
    reference then runs before the graph is written, check or no check.
    """
    started = time.monotonic()
    if precision not in ("int8", "fp32"):
        raise InvalidInput(f"precision must be 'int8' or 'fp32', got {precision!r}")
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise InvalidInput(f"block_size must be a power of two >= 16, got {block_size}")
    if accuracy_level not in (0, 1, 2, 3, 4):
        raise InvalidInput(f"accuracy_level must be 0..4, got {accuracy_level}")
    if kv_cache not in KV_CACHES:
        raise InvalidInput(f"kv_cache must be one of {', '.join(KV_CACHES)}, got {kv_cache!r}")
    hf_dir = Path(hf_dir)
    out_dir = Path(out_dir)
    spec, cfg = read_qwen3_config(hf_dir)
    ckpt = SafetensorsCheckpoint(hf_dir)
    context = min(context_length, spec.max_positions)
    block_sizes = [block_size] if block_size is not None else auto_block_sizes(spec)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the model from the service user
    try:

        def make_check() -> AccuracyCheck:
            if progress is not None:
                progress(spec.num_layers + 2, spec.num_layers + 2, "checking accuracy")
            return AccuracyCheck(hf_dir, spec, context)

        # An int8 cache's scales come from the reference, so it runs first; the check
        # (when asked for) reuses it.
        early = AccuracyCheck(hf_dir, spec, context) if kv_cache == "int8" else None
        kv_scales = None if early is None else scales(early.reference.kv_bounds)

        def write(blockwise_layers: frozenset[int], block: int) -> int:
            writer = ExternalDataWriter(tmp / f"{MODEL_FILE}.data")
            try:
                model = Qwen3GraphBuilder(
                    spec,
                    ckpt,
                    writer,
                    precision=precision,
                    block_size=block,
                    accuracy_level=accuracy_level,
                    context_length=context,
                    int8_kernel=int8_kernel,
                    blockwise_layers=blockwise_layers,
                    kv_scales=kv_scales,
                    progress=progress,
                ).build()
            finally:
                writer.close()
            onnx.save_model(model, str(tmp / MODEL_FILE))
            return writer.bytes_written

        checked = build_checked(
            write,
            tmp,
            ((lambda: early) if early is not None else make_check)
            if check_accuracy and precision == "int8"
            else None,
            int8_kernel,
            block_sizes,
        )
        data_bytes = checked.data_bytes
        for name in TOKENIZER_FILES:
            if (hf_dir / name).is_file():
                shutil.copy2(hf_dir / name, tmp / name)
        manifest = ModelManifest(
            architecture="Qwen3ForCausalLM",
            spec=spec,
            context_length=context,
            precision=precision,
            block_size=checked.block_size if precision == "int8" else None,
            accuracy_level=accuracy_level if precision == "int8" else None,
            int8_kernel=int8_kernel if precision == "int8" else None,
            eos_token_ids=_eos_ids(hf_dir, cfg),
            build_seconds=round(time.monotonic() - started, 2),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            source=str(hf_dir.resolve()),
            source_fingerprint=_fingerprint(hf_dir, ckpt),
            blockwise_layers=checked.blockwise_layers,
            accuracy=checked.manifest_accuracy(),
            kv_cache=kv_cache,
        )
        manifest.write(tmp / MANIFEST)
        _fsync_dir_files(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildReport(
        out_dir=out_dir,
        manifest=manifest,
        seconds=time.monotonic() - started,
        model_bytes=data_bytes + (out_dir / MODEL_FILE).stat().st_size,
        rejected=checked.rejected,
    )


def _fsync_dir_files(folder: Path) -> None:
    for path in folder.iterdir():
        fsync_path(path)
    fsync_path(folder)


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move ``tmp`` to ``out_dir``; an existing build is swapped out, then deleted."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)
    fsync_path(out_dir.parent)
