"""The Qwen3 hyper-parameters the builder and the runner need, read from ``config.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qa.errors import ConfigError

SUPPORTED_ARCHITECTURES = ("Qwen3ForCausalLM",)


@dataclass(frozen=True)
class Qwen3Spec:
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int  # Qwen3 sets it explicitly (128), NOT hidden_size / num_heads (80 for 4B)
    intermediate_size: int
    vocab_size: int
    max_positions: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Qwen3Spec:
        return cls(**data)


def _int(cfg: dict[str, Any], key: str, path: Path) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{path}: {key} must be a positive integer, got {value!r}")
    return value


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A model folder's JSON file (config, generation config) as a dict, or a ConfigError
    that names the file: a broken folder is the user's to fix, not a traceback."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} is not a JSON object")
    return data


def read_qwen3_config(hf_dir: Path) -> tuple[Qwen3Spec, dict[str, Any]]:
    """Validate ``hf_dir/config.json`` as a Qwen3 causal LM; returns the spec and raw dict."""
    path = hf_dir / "config.json"
    if not hf_dir.is_dir():
        raise ConfigError(f"model folder {hf_dir} does not exist")
    if not path.is_file():
        raise ConfigError(f"{hf_dir}: no config.json (is this a Hugging Face model folder?)")
    cfg = read_json_object(path, "config")
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") != "qwen3" or not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise ConfigError(
            f"{path}: not a Qwen3 model (model_type={cfg.get('model_type')!r}, "
            f"architectures={archs!r}); only Qwen3ForCausalLM is supported"
        )
    rope_scaling = cfg.get("rope_scaling")
    if rope_scaling not in (None, {}) and (
        not isinstance(rope_scaling, dict)
        or rope_scaling.get("rope_type", rope_scaling.get("type")) != "default"
    ):
        raise ConfigError(f"{path}: rope_scaling {rope_scaling!r} is not supported")
    if cfg.get("use_sliding_window"):
        raise ConfigError(f"{path}: sliding-window attention is not supported")
    if cfg.get("attention_bias"):
        raise ConfigError(f"{path}: attention biases are not supported (Qwen3 has none)")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"{path}: hidden_act {cfg.get('hidden_act')!r} is not supported")
    heads = _int(cfg, "num_attention_heads", path)
    hidden = _int(cfg, "hidden_size", path)
    kv_heads = cfg.get("num_key_value_heads", heads)
    spec = Qwen3Spec(
        num_layers=_int(cfg, "num_hidden_layers", path),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=_int({"num_key_value_heads": kv_heads}, "num_key_value_heads", path),
        head_dim=_int({"head_dim": cfg.get("head_dim", hidden // heads)}, "head_dim", path),
        intermediate_size=_int(cfg, "intermediate_size", path),
        vocab_size=_int(cfg, "vocab_size", path),
        max_positions=_int(cfg, "max_position_embeddings", path),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )
    if spec.num_heads % spec.num_kv_heads:
        raise ConfigError(f"{path}: num_attention_heads must be a multiple of num_key_value_heads")
    if spec.head_dim % 2:
        raise ConfigError(f"{path}: head_dim must be even for rotary embeddings")
    return spec, cfg
