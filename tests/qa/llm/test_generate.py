"""Streaming, stopping, cancellation, sampling and KV-cache reuse on the tiny built model."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from qa.errors import InvalidInput
from qa.llm import generate as generate_module
from qa.llm.build import build_model
from qa.llm.generate import (
    Generator,
    OnnxQwenGenerator,
    TokenEvent,
    kv_capacity,
    prefill_chunk_for,
)
from qa.llm.kv_cache import KVSessionCache

SYSTEM = {"role": "system", "content": "You answer from the numbered sources and cite them [1]."}
Q1 = [SYSTEM, {"role": "user", "content": "What is the deadline for travel expense reports?"}]


def greedy(gen: Generator, prompt: object, n: int = 10, **kw: object) -> tuple[str, TokenEvent]:
    return gen.generate(prompt, max_new_tokens=n, temperature=0, **kw)  # type: ignore[arg-type]


def test_stream_yields_pieces_in_order_then_one_final_event(gen_fp32: OnnxQwenGenerator) -> None:
    events = list(gen_fp32.stream(Q1, max_new_tokens=8, temperature=0))
    *pieces, final = events
    assert all(e.finish_reason is None and e.stats is None and e.text for e in pieces)
    assert final.finish_reason in ("stop", "length") and final.stats is not None
    tokens = [t for e in events for t in e.token_ids]
    assert final.stats.generated_tokens == len(tokens)
    # incremental pieces concatenate to the one-shot decode of the same tokens
    text = "".join(e.text for e in events)
    assert text == gen_fp32.tokenizer.decode(tokens, skip_special_tokens=True)
    stats = final.stats
    assert stats.prompt_tokens == len(gen_fp32.encode(Q1)) == stats.prefilled_tokens
    assert stats.cached_tokens == 0 and stats.time_to_first_token_s > 0


def test_chat_template_and_stop_tokens_come_from_the_model_folder(
    gen_fp32: OnnxQwenGenerator,
) -> None:
    ids = gen_fp32.encode(Q1)
    text = gen_fp32.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    vocab = gen_fp32.tokenizer.get_vocab()
    assert {vocab["<|im_end|>"], vocab["<|endoftext|>"]} <= gen_fp32.stop_ids


def test_generation_stops_on_an_eos_id_from_generation_config(
    tiny_hf: Path, gen_fp32: OnnxQwenGenerator, tmp_path: Path
) -> None:
    # Make the 4th greedy token (first occurrence) an end token of a rebuilt model.
    saved, gen_fp32.stop_ids = gen_fp32.stop_ids, frozenset()
    try:
        _, last = greedy(gen_fp32, Q1, 12)
        tokens = [
            t for e in gen_fp32.stream(Q1, max_new_tokens=12, temperature=0) for t in e.token_ids
        ]
    finally:
        gen_fp32.stop_ids = saved
    assert last.finish_reason == "length"
    k = tokens.index(tokens[3])
    hf = tmp_path / "hf"
    shutil.copytree(tiny_hf, hf)
    cfg = json.loads((hf / "generation_config.json").read_text())
    cfg["eos_token_id"] = [*cfg["eos_token_id"], tokens[k]]
    (hf / "generation_config.json").write_text(json.dumps(cfg))
    build_model(hf, tmp_path / "built", precision="fp32")
    gen = OnnxQwenGenerator(tmp_path / "built", threads=1)
    events = list(gen.stream(Q1, max_new_tokens=12, temperature=0))
    assert events[-1].finish_reason == "stop"
    assert [t for e in events for t in e.token_ids] == tokens[:k]
    assert events[-1].stats is not None and events[-1].stats.generated_tokens == k


def test_max_new_tokens_ends_with_length(gen_fp32: OnnxQwenGenerator) -> None:
    saved, gen_fp32.stop_ids = gen_fp32.stop_ids, frozenset()
    try:
        _, last = greedy(gen_fp32, Q1, 5)
    finally:
        gen_fp32.stop_ids = saved
    assert last.finish_reason == "length"
    assert last.stats is not None and last.stats.generated_tokens == 5


def test_cancel_takes_effect_within_one_token(gen_fp32: OnnxQwenGenerator) -> None:
    saved, gen_fp32.stop_ids = gen_fp32.stop_ids, frozenset()
    cancel = threading.Event()
    try:
        seen = 0
        events = []
        for event in gen_fp32.stream(Q1, max_new_tokens=50, temperature=0, cancel=cancel):
            events.append(event)
            seen += len(event.token_ids)
            if seen >= 3:
                cancel.set()
    finally:
        gen_fp32.stop_ids = saved
    final = events[-1]
    assert final.finish_reason == "cancelled"
    assert final.stats is not None
    # the token in flight when cancel was set may still complete, nothing after it
    assert final.stats.generated_tokens <= seen + 1 < 50


def test_cancel_before_start_runs_nothing(gen_fp32: OnnxQwenGenerator) -> None:
    cancel = threading.Event()
    cancel.set()
    events = list(gen_fp32.stream(Q1, max_new_tokens=5, cancel=cancel))
    assert len(events) == 1 and events[0].finish_reason == "cancelled"
    assert events[0].stats is not None and events[0].stats.prefilled_tokens == 0


def test_cancel_during_chunked_prefill(built_fp32: Path) -> None:
    gen = OnnxQwenGenerator(built_fp32, threads=1, prefill_chunk=4)
    cancel = threading.Event()
    calls = 0
    real_step = gen._step

    def step(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            cancel.set()  # as if the client went away during the second chunk
        real_step(*args)  # type: ignore[arg-type]

    gen._step = step  # type: ignore[method-assign]
    events = list(gen.stream(Q1, max_new_tokens=5, cancel=cancel))
    assert events[-1].finish_reason == "cancelled" and calls == 2


def test_long_prompts_prefill_in_chunks_whose_attention_scores_stay_small() -> None:
    # Qwen3-4B's 32 query heads: up to a 4K-token buffer the chunk is what was asked for
    assert prefill_chunk_for(2048, 32, 512) == 512
    assert prefill_chunk_for(4096, 32, 512) == 512
    # a 30K-token prompt: 128 tokens a step (2 GB of scores at 512, 0.5 GB at 128)
    assert prefill_chunk_for(30208, 32, 512) == 128
    assert prefill_chunk_for(30208, 32, 512) * 32 * 30208 * 4 <= 512 << 20
    # never below 64 tokens (the matmuls would crawl), never above what was asked
    assert prefill_chunk_for(10**7, 32, 512) == 64
    assert prefill_chunk_for(30208, 32, 4) == 4
    assert prefill_chunk_for(0, 32, 512) == 512


def test_a_capped_chunk_prefills_the_same_tokens(
    gen_fp32: OnnxQwenGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "Which receipts are needed for hotel stays abroad? " * 30
    prompt = [SYSTEM, {"role": "user", "content": question}]
    n = len(gen_fp32.encode(prompt))
    assert n > 3 * 64
    whole, _ = greedy(gen_fp32, prompt, 8)
    sizes: list[int] = []
    real_step = gen_fp32._step

    def step(tokens: list[int], *args: object) -> None:
        sizes.append(len(tokens))
        real_step(tokens, *args)  # type: ignore[arg-type]

    # a scratch budget that fits 64 rows of this model's scores at this capacity
    capacity = kv_capacity(n + 8, gen_fp32.context_length)
    budget = 64 * gen_fp32.spec.num_heads * capacity * 4
    monkeypatch.setattr(generate_module, "ATTENTION_SCRATCH_BYTES", budget)
    monkeypatch.setattr(gen_fp32, "_step", step)
    chunked, _ = greedy(gen_fp32, prompt, 8)
    assert chunked == whole
    prefill, fed = [], 0
    for size in sizes:  # the steps until the prompt is in; decoding steps follow
        if fed == n:
            break
        prefill.append(size)
        fed += size
    assert fed == n and max(prefill) == 64 and len(prefill) == -(-n // 64), sizes


def test_sampling_is_reproducible_with_a_seed_and_top_k_1_is_greedy(
    gen_fp32: OnnxQwenGenerator,
) -> None:
    kw = {"max_new_tokens": 12, "temperature": 1.5, "top_p": 0.95, "top_k": 50}
    a, _ = gen_fp32.generate(Q1, seed=1, **kw)
    b, _ = gen_fp32.generate(Q1, seed=1, **kw)
    others = {gen_fp32.generate(Q1, seed=s, **kw)[0] for s in range(2, 6)}
    assert a == b
    assert len(others | {a}) > 1
    g, _ = greedy(gen_fp32, Q1, 12)
    k1, _ = gen_fp32.generate(Q1, max_new_tokens=12, temperature=1.0, top_k=1, seed=3)
    assert k1 == g


@pytest.mark.parametrize(
    "kw",
    [{"temperature": -1.0}, {"top_p": 0.0}, {"top_k": -2}, {"max_new_tokens": 0}],
)
def test_bad_sampling_parameters_are_rejected(gen_fp32: OnnxQwenGenerator, kw: dict) -> None:
    with pytest.raises(InvalidInput):
        gen_fp32.stream(Q1, **kw)


def test_prompt_must_fit_the_context(gen_fp32: OnnxQwenGenerator) -> None:
    with pytest.raises(InvalidInput, match="context"):
        gen_fp32.stream([5] * gen_fp32.context_length)
    with pytest.raises(InvalidInput):
        gen_fp32.stream([gen_fp32.spec.vocab_size + 5])


def test_follow_up_turn_reuses_the_chat_kv_and_matches_a_cold_run(
    gen_fp32: OnnxQwenGenerator,
) -> None:
    cache = KVSessionCache()
    first, last1 = greedy(gen_fp32, Q1, 8, session_cache=cache, chat_id="c1")
    follow = [
        *Q1,
        {"role": "assistant", "content": first},
        {"role": "user", "content": "And who approves it?"},
    ]
    warm, last2 = greedy(gen_fp32, follow, 8, session_cache=cache, chat_id="c1")
    cold, last3 = greedy(gen_fp32, follow, 8)
    assert last2.stats is not None and last3.stats is not None and last1.stats is not None
    assert warm == cold
    assert last2.stats.cached_tokens >= last1.stats.prompt_tokens
    assert last2.stats.prefilled_tokens == last2.stats.prompt_tokens - last2.stats.cached_tokens
    assert last2.stats.prefilled_tokens < last3.stats.prefilled_tokens
    # another chat id cannot see c1's turns, only the shared system prefix
    _, other = greedy(gen_fp32, follow, 8, session_cache=cache, chat_id="c2")
    assert other.stats is not None
    assert other.stats.cached_tokens < last1.stats.prompt_tokens


def test_system_prefix_is_shared_across_requests(gen_int8: OnnxQwenGenerator) -> None:
    cache = KVSessionCache()
    sys_len = len(gen_int8.tokenizer.apply_chat_template([SYSTEM], tokenize=True))
    greedy(gen_int8, Q1, 4, session_cache=cache)  # no chat id: only the prefix is kept
    q2 = [SYSTEM, {"role": "user", "content": "员工必须在多少天内提交报告？"}]
    warm, last = greedy(gen_int8, q2, 8, session_cache=cache)
    cold, _ = greedy(gen_int8, q2, 8)
    assert last.stats is not None and last.stats.cached_tokens == sys_len
    assert warm == cold
    assert len(cache) == 1 and cache.hits == 1


def test_cache_is_bounded_by_bytes(gen_fp32: OnnxQwenGenerator) -> None:
    cache = KVSessionCache(max_bytes=10**9)
    greedy(gen_fp32, Q1, 4, session_cache=cache, chat_id="a")
    one = cache.nbytes
    small = KVSessionCache(max_bytes=int(one * 1.5))
    for chat in ("a", "b", "c"):
        greedy(gen_fp32, Q1, 4, session_cache=small, chat_id=chat)
    assert small.nbytes <= small.max_bytes
    assert len(small) < 4  # older entries were evicted


def test_int8_generator_streams_text(gen_int8: OnnxQwenGenerator) -> None:
    text, last = gen_int8.generate(Q1, max_new_tokens=6, temperature=0.7, seed=0)
    assert last.finish_reason in ("stop", "length")
    assert last.stats is not None and last.stats.decode_tokens_per_s >= 0
    assert isinstance(text, str)


def test_a_cancel_stops_a_prefill_chunk_midway(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The whole prompt in one chunk (one onnxruntime run): a cancel set a tenth of the way
    through ends it long before the chunk would have, and the generator works afterwards."""
    from tests.web.live import build_streaming_model

    model = build_streaming_model(tmp_path_factory.getbasetemp())
    gen = OnnxQwenGenerator(model, threads=1, prefill_chunk=1 << 20)
    ids = [1000 + (i * 7919) % 50000 for i in range(3500)]
    started = time.perf_counter()
    _, whole = gen.generate(ids, max_new_tokens=1, temperature=0)
    full_s = time.perf_counter() - started
    assert whole.stats is not None and whole.stats.prefilled_tokens == len(ids)

    cancel = threading.Event()
    timer = threading.Timer(full_s * 0.1, cancel.set)
    started = time.perf_counter()
    timer.start()
    events = list(gen.stream(ids, max_new_tokens=5, temperature=0, cancel=cancel))
    took = time.perf_counter() - started
    assert events[-1].finish_reason == "cancelled" and len(events) == 1
    assert took < full_s * 0.6, (took, full_s)
    _, again = gen.generate(ids[:64], max_new_tokens=3, temperature=0)
    assert again.finish_reason in ("stop", "length") and again.stats is not None
    assert again.stats.generated_tokens >= 1


def test_the_system_turn_prefilled_at_load_serves_the_first_request(
    gen_int8: OnnxQwenGenerator,
) -> None:
    cache = KVSessionCache()
    n = gen_int8.prefill_prefix(SYSTEM, cache)
    assert n == len(gen_int8._template([SYSTEM], False)) and n > 10
    assert gen_int8.prefill_prefix(SYSTEM, cache) == n  # already there: nothing redone
    _, last = greedy(gen_int8, Q1, session_cache=cache)
    assert last.stats is not None and last.stats.cached_tokens == n
    assert last.stats.prefilled_tokens == last.stats.prompt_tokens - n
    # the same tokens as without the head start
    assert greedy(gen_int8, Q1)[0] == greedy(gen_int8, Q1, session_cache=cache)[0]
