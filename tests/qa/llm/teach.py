"""Teach a tiny Qwen3 fixed replies: fine-tune it in place until greedy decoding of each
prompt gives its reply, then the end token.

The tests use it to make the real production path (ONNX build, generator, answer service)
carry text the MODEL wrote: a cited answer, or the decline sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qa.answering.prompt import Message

MAX_STEPS = 600
LEARNING_RATE = 3e-3
CHECK_EVERY = 25  # steps between greedy checks of every reply


def teach(hf_dir: Path, examples: Sequence[tuple[list[Message], str]]) -> None:
    """Fine-tune the model in ``hf_dir`` on ``(messages, reply)`` pairs and save it."""
    import torch
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    batch: list[tuple[torch.Tensor, torch.Tensor, list[int]]] = []
    for messages, reply in examples:
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        target = [*tok.encode(reply, add_special_tokens=False), end]
        batch.append((torch.tensor([list(prompt) + target]), torch.tensor(target), target))
    model = Qwen3ForCausalLM.from_pretrained(hf_dir)
    model.train()
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def logits_of(ids: torch.Tensor, target: list[int]) -> torch.Tensor:
        # Logits of the reply positions only: the full 151,936-row vocabulary over the
        # whole prompt would cost ~0.6 GB per step and all of the time.
        out: torch.Tensor = model(input_ids=ids, logits_to_keep=len(target) + 1).logits[0, :-1]
        return out

    for step in range(MAX_STEPS):
        loss = sum(
            torch.nn.functional.cross_entropy(logits_of(ids, target), want)
            for ids, want, target in batch
        )
        assert isinstance(loss, torch.Tensor)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % CHECK_EVERY == CHECK_EVERY - 1:
            with torch.no_grad():
                learnt = all(
                    logits_of(ids, target).argmax(-1).tolist() == target for ids, _, target in batch
                )
            if learnt and loss.item() < 0.05 * len(batch):
                break
    else:
        raise AssertionError(f"the tiny model did not learn its replies (loss {loss.item():.3f})")
    model.eval()
    model.save_pretrained(hf_dir, safe_serialization=True)
