"""Small parts: incremental detokenization, sampling, the KV snapshot cache."""

from __future__ import annotations

import numpy as np
import pytest

from qa.llm.detok import IncrementalDetokenizer
from qa.llm.generate import OnnxQwenGenerator
from qa.llm.kv_cache import KVSessionCache, KVSnapshot, common_prefix
from qa.llm.sampling import Sampler, SamplingParams


@pytest.mark.parametrize(
    # Qwen's BPE has common CJK characters as whole tokens ("猫", "报告"); rare ones
    # (龘, 𠀀) and emoji fall back to byte pieces that complete a character only later
    "text",
    ["龘齉𠀀猫狗报告", "rocket 🚀 globe 🌍 Ω", "plain words [1]."],
)
def test_incremental_detokenization_never_splits_a_character(
    gen_fp32: OnnxQwenGenerator, text: str
) -> None:
    tok = gen_fp32.tokenizer
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > 1
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    # multi-byte characters really span tokens here, so some pushes must return ""
    if any(ord(c) > 0x7F for c in text):
        assert "" in pieces[:-1]


def test_sampler_never_picks_padding_rows_past_the_tokenizer() -> None:
    logits = np.zeros(100, np.float32)
    logits[95] = 50.0  # a padded row that a random model might favour
    logits[7] = 1.0
    assert Sampler(SamplingParams(temperature=0), vocab_limit=90)(logits) == 7
    hot = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=0), vocab_limit=90)
    assert all(hot(logits) < 90 for _ in range(50))


def test_top_p_and_top_k_cut_the_tail() -> None:
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.05], np.float32))
    top_p = Sampler(SamplingParams(temperature=1.0, top_p=0.5, top_k=0, seed=1), vocab_limit=4)
    assert {top_p(logits) for _ in range(50)} == {0}
    top_k = Sampler(SamplingParams(temperature=1.0, top_p=1.0, top_k=2, seed=1), vocab_limit=4)
    assert {top_k(logits) for _ in range(200)} == {0, 1}


def _snap(tokens: list[int], key: str = "m") -> KVSnapshot:
    kv = np.zeros((2, len(tokens), 4), np.float32)
    return KVSnapshot(key, tuple(tokens), (kv, kv), (kv, kv))


def test_cache_lookup_takes_the_longest_usable_prefix() -> None:
    cache = KVSessionCache()
    cache.put_prefix(_snap([1, 2, 3]))
    cache.put_chat("c", _snap([1, 2, 3, 4, 5, 6]))
    cache.put_prefix(_snap([9, 9, 9, 9, 9], key="other-model"))
    snap, n = cache.lookup("m", [1, 2, 3, 4, 7], chat_id="c")
    assert n == 4 and snap is not None and snap.tokens[:4] == (1, 2, 3, 4)
    # another chat only sees the shared prefix
    snap, n = cache.lookup("m", [1, 2, 3, 4, 7], chat_id="d")
    assert n == 3
    # at least one token is always left to run, even for an exact repeat
    _, n = cache.lookup("m", [1, 2, 3], chat_id=None)
    assert n == 2
    # a snapshot of another model is never used
    _, n = cache.lookup("m", [9, 9, 9, 9, 9, 9])
    assert n == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2 and common_prefix([], [1]) == 0
