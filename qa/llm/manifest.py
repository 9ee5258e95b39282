"""``docqa_model.json``: what was built, from what, and how; read by the runner and CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from qa.errors import ModelNotBuilt
from qa.llm.kv_quant import KV_CACHES, bytes_per_token
from qa.llm.spec import Qwen3Spec

MANIFEST = "docqa_model.json"
MODEL_FILE = "model.onnx"
#: graph input: how many last positions get logits (models built before it have 1 implied).
#: Here, not in graph.py, so the runner knows it without importing onnx (1-2 s at start-up)
LOGITS_TO_KEEP = "logits_to_keep"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelManifest:
    architecture: str
    spec: Qwen3Spec
    context_length: int
    precision: str
    block_size: int | None
    accuracy_level: int | None
    int8_kernel: str | None
    eos_token_ids: list[int]
    build_seconds: float
    built_at: str
    source: str
    source_fingerprint: str
    # Layers built with the blockwise kernel although ``int8_kernel`` says otherwise (the
    # accuracy check's fallback), and the check's figures (``accuracy.AccuracyReport``
    # as JSON; None when the check was skipped). Manifests written before both existed
    # read as [] and None.
    blockwise_layers: tuple[int, ...] = ()
    accuracy: dict[str, Any] | None = None
    #: the KV cache's element type (``kv_quant.KV_CACHES``); older manifests read "fp32"
    kv_cache: str = "fp32"

    @property
    def key(self) -> str:
        """Which build produced a KV cache or planned a prompt (``build_key``)."""
        return build_key(self.to_json())

    @property
    def label(self) -> str:
        """What answers name as their model: ``model_label``."""
        return model_label(self.to_json())

    @property
    def kv_bytes_per_token(self) -> int:
        s = self.spec
        return bytes_per_token(self.kv_cache, s.num_layers, s.num_kv_heads, s.head_dim)

    @property
    def rows_independent(self) -> bool:
        """Whether a step of several tokens computes each one as a step of one would (to
        float rounding: ~1e-6 measured). Not with any layer on the dynamic kernel: it
        quantizes a step's activations with one scale for all its tokens."""
        if self.precision != "int8" or self.int8_kernel != "dynamic":
            return True
        return set(self.blockwise_layers) >= set(range(self.spec.num_layers))

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            **self.spec.to_json(),
            "context_length": self.context_length,
            "precision": self.precision,
            "block_size": self.block_size,
            "accuracy_level": self.accuracy_level,
            "int8_kernel": self.int8_kernel,
            "eos_token_ids": self.eos_token_ids,
            "build_seconds": self.build_seconds,
            "built_at": self.built_at,
            "source": self.source,
            "source_fingerprint": self.source_fingerprint,
            "blockwise_layers": list(self.blockwise_layers),
            "accuracy": self.accuracy,
            "kv_cache": self.kv_cache,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        path = model_dir / MANIFEST
        if not (model_dir / MODEL_FILE).is_file() or not path.is_file():
            raise ModelNotBuilt(f"no built model in {model_dir} (run `docqa model build`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format_version") != FORMAT_VERSION:
                raise ModelNotBuilt(
                    f"{path}: format {data.get('format_version')} is not {FORMAT_VERSION}; "
                    "rebuild the model"
                )
            spec_fields = Qwen3Spec.__dataclass_fields__
            return cls(
                architecture=data["architecture"],
                spec=Qwen3Spec.from_json({k: data[k] for k in spec_fields}),
                context_length=data["context_length"],
                precision=data["precision"],
                block_size=data["block_size"],
                accuracy_level=data["accuracy_level"],
                int8_kernel=data.get("int8_kernel"),
                eos_token_ids=list(data["eos_token_ids"]),
                build_seconds=data["build_seconds"],
                built_at=data["built_at"],
                source=data["source"],
                source_fingerprint=data["source_fingerprint"],
                blockwise_layers=tuple(int(i) for i in data.get("blockwise_layers") or ()),
                accuracy=_accuracy(data.get("accuracy")),
                kv_cache=_kv_cache(data.get("kv_cache", "fp32")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelNotBuilt(f"{path}: unreadable manifest ({exc}); rebuild the model") from exc


def build_key(manifest: dict[str, Any]) -> str:
    """Builds whose KV caches may not be mixed get different keys: the source weights, the
    precision and the cache's element type (a cached float32 prefix is no int8 cache)."""
    kv = manifest.get("kv_cache", "fp32")
    return f"{manifest['source_fingerprint']}:{manifest['precision']}:{kv}"


def _kv_cache(value: object) -> str:
    if value not in KV_CACHES:
        raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHES)}, got {value!r}")
    return str(value)


def _accuracy(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"accuracy must be an object, got {type(value).__name__}")
    return value


def model_label(manifest: dict[str, Any]) -> str:
    """The model for people: the source folder's name (a Hugging Face checkout is named
    after the model) and the weights' precision, e.g. ``Qwen3-4B-Instruct-2507 (INT8)``."""
    name = PurePath(str(manifest.get("source") or "")).name or "model"
    precision = str(manifest.get("precision") or "").upper()
    return f"{name} ({precision})" if precision else name
