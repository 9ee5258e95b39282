"""Prompt-lookup speculation: drafts come from repeated n-grams, greedy output is the same
token for token with it on and off, and sampling keeps the model's distribution."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from qa.llm.generate import OnnxQwenGenerator, TokenEvent
from qa.llm.kv_cache import KVSessionCache
from qa.llm.lookup import DRAFT_TOKEN_COST, DraftLength, PromptLookup
from qa.llm.manifest import LOGITS_TO_KEEP
from qa.llm.sampling import Sampler, SamplingParams

COPY = "The nightly hotel limit in London is EUR 220; in Paris it is EUR 180."
#: prompts whose continuation repeats what they contain (the case speculation is for), a
#: chat and raw ids that loop
PROMPTS: list[object] = [
    [{"role": "user", "content": f"{COPY} {COPY} Repeat: {COPY[:30]}"}],
    list(range(1000, 1040)) * 3,
]


def tokens_of(events: list[TokenEvent]) -> list[int]:
    return [t for e in events for t in e.token_ids]


@pytest.fixture(scope="module")
def plain(built_int8: Path) -> OnnxQwenGenerator:
    return OnnxQwenGenerator(built_int8, threads=1, draft_tokens=0)


@pytest.fixture(scope="module")
def fp32_plain(built_fp32: Path) -> OnnxQwenGenerator:
    return OnnxQwenGenerator(built_fp32, threads=1, draft_tokens=0)


def test_lookup_drafts_what_followed_the_longest_earlier_match() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 1, 2])
    assert lookup.draft(3) == [3, 4, 5]  # "1 2" was followed by 3 4 5
    lookup.extend([3])
    assert lookup.draft(2) == [4, 5]  # "1 2 3" now
    lookup.extend([7])
    assert lookup.draft(4) == []  # "3 7" never occurred, a lone "7" is too weak
    assert lookup.draft(0) == []
    # the latest earlier occurrence wins
    assert PromptLookup([5, 6, 1, 8, 5, 6, 2, 8, 5, 6]).draft(1) == [2]
    # a repetition loop drafts its own continuation
    assert PromptLookup([4, 4, 4]).draft(3) == [4]
    with pytest.raises(ValueError):
        PromptLookup([], min_ngram=0)


def test_draft_length_follows_how_often_drafts_are_kept() -> None:
    length = DraftLength(4)
    assert length.next() == 1  # the prior: a third of the guesses kept
    for _ in range(10):
        length.record(length.next(), length.next())  # everything kept: lengths grow
    assert length.next() == 4
    rejected = 0
    while length.next() > 0:  # nothing kept any more
        length.record(length.next(), 0)
        rejected += 1
    assert rejected <= 8  # soon a draft costs more than it yields: none is made
    idle = 0
    while length.next() == 0:  # no drafts: the bad evidence fades, then a probe
        length.record(0, 0)
        idle += 1
    assert 3 <= idle <= 15 and length.next() == 1
    # the worst case: every probe rejected costs a few percent of the steps
    steps, cost = 0, 0.0
    for _ in range(1000):
        k = length.next()
        cost += 1 + DRAFT_TOKEN_COST * k
        steps += 1
        length.record(k, 0)
    assert cost / steps <= 1.05


@pytest.mark.parametrize("prompt", PROMPTS, ids=["chat", "ids"])
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_greedy_output_is_the_same_token_for_token_with_speculation(
    prompt: object,
    precision: str,
    gen_int8: OnnxQwenGenerator,
    gen_fp32: OnnxQwenGenerator,
    plain: OnnxQwenGenerator,
    fp32_plain: OnnxQwenGenerator,
) -> None:
    spec, ref = (gen_int8, plain) if precision == "int8" else (gen_fp32, fp32_plain)
    assert spec.draft_tokens > 0 and ref.draft_tokens == 0
    want = list(ref.stream(prompt, max_new_tokens=48, temperature=0))  # type: ignore[arg-type]
    got = list(spec.stream(prompt, max_new_tokens=48, temperature=0))  # type: ignore[arg-type]
    assert tokens_of(got) == tokens_of(want)
    assert "".join(e.text for e in got) == "".join(e.text for e in want)
    s = got[-1].stats
    assert s is not None and want[-1].stats is not None
    assert s.generated_tokens == want[-1].stats.generated_tokens
    assert s.draft_tokens > 0 and 0 < s.accepted_draft_tokens <= s.draft_tokens
    assert want[-1].stats.draft_tokens == 0


def test_speculation_leaves_a_kv_cache_the_next_turn_can_reuse(
    gen_int8: OnnxQwenGenerator, plain: OnnxQwenGenerator
) -> None:
    """Rejected guesses leave stale KV past the kept length; a follow-up turn that starts
    from the saved chat must see exactly the tokens that were kept."""
    prompt: list[dict[str, str]] = PROMPTS[0]  # type: ignore[assignment]
    cache = KVSessionCache(max_bytes=64 << 20)
    text, first = gen_int8.generate(
        prompt, max_new_tokens=30, temperature=0, session_cache=cache, chat_id="c"
    )
    assert first.stats is not None
    assert first.stats.draft_tokens > first.stats.accepted_draft_tokens > 0  # both happened
    follow = [*prompt, {"role": "assistant", "content": text}, {"role": "user", "content": COPY}]
    got, last = gen_int8.generate(
        follow, max_new_tokens=16, temperature=0, session_cache=cache, chat_id="c"
    )
    assert last.stats is not None and last.stats.cached_tokens > len(plain.encode(prompt))
    want, _ = plain.generate(follow, max_new_tokens=16, temperature=0)
    assert got == want


def test_the_token_budget_holds_with_speculation(gen_int8: OnnxQwenGenerator) -> None:
    for n in (1, 2, 5):
        events = list(gen_int8.stream(PROMPTS[1], max_new_tokens=n, temperature=0))  # type: ignore[arg-type]
        assert events[-1].stats is not None and events[-1].stats.generated_tokens <= n
        assert len(tokens_of(events)) == events[-1].stats.generated_tokens


def test_sampling_with_speculation_stays_within_the_sampler_settings(
    gen_int8: OnnxQwenGenerator,
) -> None:
    # top_k 1 makes sampling deterministic: every accepted draft must be the argmax
    greedy, _ = gen_int8.generate(PROMPTS[1], max_new_tokens=40, temperature=0)  # type: ignore[arg-type]
    sampled, last = gen_int8.generate(
        PROMPTS[1], max_new_tokens=40, temperature=0.9, top_k=1, seed=3
    )  # type: ignore[arg-type]
    assert sampled == greedy and last.stats is not None and last.stats.accepted_draft_tokens > 0


def test_verify_draws_exactly_from_the_sampling_distribution() -> None:
    """Speculative sampling's rule with a certain draft: accepted with p(draft), else a
    draw from p without the draft. Over many trials the tokens follow p itself."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=64).astype(np.float32) * 2
    params = SamplingParams(temperature=0.8, top_p=0.9, top_k=10, seed=7)
    sampler = Sampler(params, vocab_limit=60)
    order, probs = sampler._distribution(logits)
    p = dict(zip(order.tolist(), probs.tolist(), strict=True))
    trials = 40_000
    for draft in (int(order[0]), int(order[-1]), 63, int(np.argsort(logits)[0])):
        counts: dict[int, int] = {}
        kept = 0
        for _ in range(trials):
            ok, token = sampler.verify(logits, draft)
            kept += ok
            counts[token] = counts.get(token, 0) + 1
        assert set(counts) <= set(p)  # never outside top-k / top-p, never padding rows
        assert kept / trials == pytest.approx(p.get(draft, 0.0), abs=0.01)
        for token, want in p.items():
            assert counts.get(token, 0) / trials == pytest.approx(want, abs=0.01), (draft, token)
    greedy = Sampler(SamplingParams(temperature=0), vocab_limit=60)
    best = int(np.argmax(logits[:60]))
    assert greedy.verify(logits, best) == (True, best)
    assert greedy.verify(logits, (best + 1) % 60) == (False, best)


def test_a_model_built_before_logits_to_keep_decodes_without_speculation(
    built_int8: Path, tmp_path: Path, plain: OnnxQwenGenerator
) -> None:
    old = tmp_path / "old"
    shutil.copytree(built_int8, old)
    model = onnx.load(str(old / "model.onnx"), load_external_data=False)
    kept = [i for i in model.graph.input if i.name != LOGITS_TO_KEEP]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.append(
        helper.make_tensor(LOGITS_TO_KEEP, onnx.TensorProto.INT64, [1], [1])
    )
    onnx.save_model(model, str(old / "model.onnx"))
    gen = OnnxQwenGenerator(old, threads=1)
    assert gen.draft_tokens == 0
    got, _ = gen.generate(PROMPTS[1], max_new_tokens=20, temperature=0)  # type: ignore[arg-type]
    want, _ = plain.generate(PROMPTS[1], max_new_tokens=20, temperature=0)  # type: ignore[arg-type]
    assert got == want


def test_layers_on_the_dynamic_kernel_turn_speculation_off(built_int8_dynamic: Path) -> None:
    """The dynamic kernel quantizes a step's activations with one scale for all its tokens,
    so checking a draft in one step would not compute what single steps compute."""
    gen = OnnxQwenGenerator(built_int8_dynamic, threads=1)
    assert not gen.manifest.rows_independent and gen.draft_tokens == 0
    every = tuple(range(gen.spec.num_layers))
    assert replace(gen.manifest, blockwise_layers=every).rows_independent  # all fell back
    _, last = gen.generate(PROMPTS[1], max_new_tokens=30, temperature=0)  # type: ignore[arg-type]
    assert last.stats is not None and last.stats.draft_tokens == 0
