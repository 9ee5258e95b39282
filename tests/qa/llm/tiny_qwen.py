"""A tiny random Qwen3 inside the REAL Qwen3-4B-Instruct-2507 folder: the test stand-in.

The tokenizer files, the chat template, ``generation_config.json`` and every field of
``config.json`` that the service reads come byte for byte (or value for value) from
``../shared/models/qwen3-4b-instruct-2507`` (used by path, never copied into the repo): the
151,669-token byte-level BPE, eos [151645, 151643], vocab rows 151,936, rope_theta 5e6, the
2507 template. Only the size is shrunk: 2 layers, hidden 64, ``head_dim`` (32) deliberately
different from ``hidden_size / num_attention_heads`` (16), as in Qwen3-4B (128 vs 80).

So the whole suite runs the prompts, stop tokens, sampling defaults and token budgets that a
user's copy of the real model gives the service; only the weight values are random.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
#: the real model folder without its weights (see its README)
REAL_QWEN3 = REPO.parent / "shared" / "models" / "qwen3-4b-instruct-2507"
#: the tokenizer / template / generation files of the real folder, copied as they are
REAL_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json")
#: config.json fields replaced to make the model tiny; everything else is the real value
TINY_SIZE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "torch_dtype": "float32",
}


def real_folder() -> Path:
    if not (REAL_QWEN3 / "config.json").is_file():
        raise FileNotFoundError(f"the real Qwen3 folder is missing at {REAL_QWEN3}")
    return REAL_QWEN3


def real_config() -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads((real_folder() / "config.json").read_text(encoding="utf-8"))
    return cfg


def copy_real_files(out_dir: Path) -> None:
    """The real folder's tokenizer, chat template and generation config, unchanged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in REAL_FILES:
        shutil.copyfile(real_folder() / name, out_dir / name)


def tiny_config(*, layers: int = 2, max_positions: int | None = 512) -> dict[str, Any]:
    """The real config.json with the size fields shrunk.

    ``max_positions=None`` keeps the real 262,144; the default 512 keeps tests of long
    prompts (context overflow, summary windows) cheap.
    """
    cfg = {**real_config(), **TINY_SIZE, "num_hidden_layers": layers, "max_window_layers": layers}
    if max_positions is not None:
        cfg["max_position_embeddings"] = max_positions
    return cfg


def make_tiny_qwen3(
    out_dir: Path, *, seed: int = 0, layers: int = 2, max_positions: int | None = 512
) -> Path:
    """Write the real tokenizer files, a tiny config and random safetensors to ``out_dir``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    copy_real_files(out_dir)
    cfg = tiny_config(layers=layers, max_positions=max_positions)
    config = Qwen3Config(**{k: v for k, v in cfg.items() if k != "torch_dtype"})
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    # Random init gives near-uniform logits; larger weights make greedy choices decisive
    # (ties between fp32 backends would otherwise make parity tests flaky).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.08)
    model.save_pretrained(out_dir, safe_serialization=True)
    # save_pretrained wrote transformers' own config.json and generation_config.json; put
    # the real folder's back (the config with only the size fields changed).
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(real_folder() / "generation_config.json", out_dir / "generation_config.json")
    return out_dir
