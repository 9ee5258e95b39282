"""A tiny random Qwen3 with a tokenizer trained on the spot: the test stand-in for the 4B.

Same transformers class as the real model, and ``head_dim`` (32) deliberately different
from ``hidden_size / num_attention_heads`` (16), as in Qwen3-4B (128 vs 80).
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# The message-formatting core of Qwen's chat template (no tools / thinking branches).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    "The travel policy says expense reports are due within thirty days.",
    "Receipts above twenty euros are required for every claim.",
    "The manager approves the report in the portal before finance pays it.",
    "员工必须在返回后三十天内提交差旅费用报告。",
    "超过二十欧元的收据是必需的。经理在门户中批准报告。",
    "Question: what is the deadline? Answer: thirty days [1].",
    "Sources: [1] Travel handbook, page 3. [2] Finance FAQ, page 7.",
    "café naïve résumé — emoji 🙂 and symbols ∑ ∞ ≤ ≥.",
]


def train_tokenizer(out_dir: Path, vocab_size: int = 1000) -> int:
    """Train a byte-level BPE with Qwen's special tokens; returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return len(fast)


def make_tiny_qwen3(
    out_dir: Path, *, seed: int = 0, layers: int = 2, max_positions: int = 512
) -> Path:
    """Write config, safetensors weights, tokenizer and generation config to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = train_tokenizer(out_dir)
    with (out_dir / "tokenizer.json").open(encoding="utf-8") as f:
        ids = {t["content"]: t["id"] for t in json.load(f)["added_tokens"]}
    config = Qwen3Config(
        vocab_size=vocab + 64,  # padded past the tokenizer, as Qwen pads 151,669 to 151,936
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=max_positions,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
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
    GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    ).save_pretrained(out_dir)
    return out_dir
