"""Tiny Qwen3 variants for the build's accuracy check: a wider healthy one, and the same
with planted activation-outlier channels.

Real LLMs have a few hidden channels whose normed activations are orders of magnitude
larger than the rest. ``plant_outliers`` reproduces that without changing what the model
computes: channels ``c`` of one layer's ``input_layernorm`` weight are multiplied by
``scale`` and the matching input columns of q/k/v_proj divided by it, so the float32
function is the same while the activations entering q/k/v carry huge outliers. A
per-tensor activation scale (the dynamic INT8 kernel) then rounds every other channel
to a few levels; per-block scales (blockwise, 32 channels a block) confine the damage to
the outliers' block, which is why the model is 256 wide (8 blocks), not the fixture's 64.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def make_wide_qwen3(tiny_hf: Path, out_dir: Path, *, hidden: int = 256, layers: int = 3) -> Path:
    """``tiny_hf``'s tokenizer and config, ``hidden`` wide, random weights (seed 0)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    shutil.copytree(tiny_hf, out_dir, ignore=shutil.ignore_patterns("*.safetensors*"))
    cfg = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    cfg.update(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers)
    (out_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config.from_pretrained(out_dir)).eval()
    with torch.no_grad():  # the fixture's recipe, std scaled so activations keep their size
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.08 * (64 / hidden) ** 0.5)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def plant_outliers(
    src: Path, out_dir: Path, *, layer: int, channels: list[int], scale: float
) -> Path:
    """A copy of ``src`` computing the same function, with outlier channels in ``layer``."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, out_dir, ignore=shutil.ignore_patterns("*.safetensors*"))
    tensors = load_file(src / "model.safetensors")
    p = f"model.layers.{layer}"
    tensors[f"{p}.input_layernorm.weight"][channels] *= scale
    for proj in ("q_proj", "k_proj", "v_proj"):
        tensors[f"{p}.self_attn.{proj}.weight"][:, channels] /= scale
    save_file(tensors, out_dir / "model.safetensors", metadata={"format": "pt"})
    return out_dir
