"""How ``qa.answering.evidence.FOCUS_RATIO`` was chosen, and re-checking it.

    .venv/bin/python -m tests.qa.focus_calibration [--data-dir var/test-eval] [--k 6 16]

Not a test (no ``test_`` prefix: CI never runs it). Every XQuAD question (en and zh)
is retrieved like the answer service does (hybrid, k = 6, the default, and k = 16, a full
source budget) against its own language's paragraphs. For the questions the evidence gate
lets through (a declined one never reaches a prompt), and for each candidate ratio, it
prints:

* ``lost``: the share of questions where a retrieved passage holds a gold answer but
  focusing drops every such passage (the model could then only decline or guess);
* ``kept``: the mean number of passages left in the prompt;
* ``tokens``: the prompt's mean and 95th-percentile length in tokens of the real Qwen3
  tokenizer (``../shared/models/qwen3-4b-instruct-2507``), rendered by its own chat
  template with the default system prompt, as ``docqa ask`` would send it.

The ratio is the largest one that loses at most 1 % of the answerable questions in
either language at either k. Measured (AMD EPYC Zen 1, packaged MiniLM onnx-int8, all
1,190 questions per language, those the gate lets through):

    set   k ratio  lost  kept  tokens  p95
    en    6  0.00 0.000  6.00    1109 1300
    en    6  0.40 0.000  4.00     792 1242
    en    6  0.50 0.001  2.94     626 1218
    en   16  0.00 0.000 16.00    2721 3005
    en   16  0.40 0.001  5.04     963 2115
    en   16  0.50 0.003  3.27     680 1463
    zh    6  0.00 0.000  6.00     955 1100
    zh    6  0.40 0.000  3.05     562 1007
    zh    6  0.50 0.009  2.40     475  934
    zh   16  0.00 0.000 15.99    2313 2583
    zh   16  0.40 0.002  4.14     709 1761
    zh   16  0.50 0.010  2.93     546 1360

so 0.4 (``Settings.focus_ratio``): Chinese, with no dense signal, loses its gold passage
first as the ratio rises.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.squad import contains_answer
from qa.answering.evidence import judge, passage_support
from qa.answering.prompt import DEFAULT_SYSTEM_PROMPT, system_message, user_message
from qa.retrieval.retriever import Passage
from qa.settings import Settings
from tests.conftest import REPO, corpus_path
from tests.qa.decline_calibration import _retrievers

RATIOS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
QWEN = REPO.parent / "shared" / "models" / "qwen3-4b-instruct-2507"


def _questions(beir_dir: Path) -> list[tuple[str, list[str]]]:
    with (beir_dir / "queries.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(str(r["text"]), list(r["metadata"]["answers"])) for r in rows]


def _prompt_tokens(tok: Any, question: str, passages: Sequence[Passage]) -> int:
    messages = [
        system_message(DEFAULT_SYSTEM_PROMPT),
        {"role": "user", "content": user_message(question, passages)},
    ]
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return len(ids)


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "test-eval")
    parser.add_argument("--backend", default="onnx-int8", choices=("torch", "onnx-int8"))
    parser.add_argument("--k", type=int, nargs="+", default=[6, 16])
    parser.add_argument("--limit", type=int, default=None, help="questions per language")
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir, embed_backend=args.backend)
    tok = AutoTokenizer.from_pretrained(QWEN, local_files_only=True)
    retrievers = {name: (r, coll) for name, r, coll in _retrievers(settings, ("en", "zh"))}
    header = ("set", 6), ("k", 3), ("ratio", 5), ("n", 5), ("lost", 6), ("kept", 5)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'tokens':>7} {'p95':>6}")
    for language in ("en", "zh"):
        retriever, coll = retrievers[language]
        questions = _questions(corpus_path("qa", "xquad", f"derived_beir_{language}"))
        for k in args.k:
            lost = dict.fromkeys(RATIOS, 0)
            kept: dict[float, list[int]] = {r: [] for r in RATIOS}
            tokens: dict[float, list[int]] = {r: [] for r in RATIOS}
            asked = 0
            for question, answers in questions[: args.limit]:
                result = retriever.retrieve(question, [coll], k=k)
                if not judge(question, result).supported:
                    continue
                asked += 1
                support = passage_support(question, result)
                best = max(support)
                holds = [contains_answer(p.text, answers) for p in result.passages]
                for ratio in RATIOS:
                    keep = [s >= ratio * best for s in support]
                    passages = [p for p, on in zip(result.passages, keep, strict=True) if on]
                    lost[ratio] += any(holds) and not any(
                        h and on for h, on in zip(holds, keep, strict=True)
                    )
                    kept[ratio].append(len(passages))
                    tokens[ratio].append(_prompt_tokens(tok, question, passages))
            for ratio in RATIOS:
                print(
                    f"{language:>6} {k:>3} {ratio:>5.2f} {asked:>5} {lost[ratio] / asked:>6.3f}"
                    f" {np.mean(kept[ratio]):>5.2f} {np.mean(tokens[ratio]):>7.0f}"
                    f" {np.percentile(tokens[ratio], 95):>6.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
