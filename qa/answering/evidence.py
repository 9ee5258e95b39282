"""Does anything retrieved support an answer? The evidence both answer modes decide on.

Retrieval always returns its k best passages, however poor: fused RRF scores are ranks,
not relevance, so "capital of France" against a travel handbook still gets six sources.
What tells a supported question from an unsupported one is how much of the *question*
the best passage and sentence cover:

* ``coverage``: the share of the question's content terms (``qa.retrieval.lexical``),
  weighted by their idf over the searched collections, found in the best passage. A
  question's rare terms (a name, a place, a topic) carry it; a term no chunk contains at
  all weighs most, since the documents do not mention it.
* ``similarity``: the best cosine between the question and a retrieved chunk, when the
  dense ranking took part (not for Chinese with the English MiniLM, see
  ``qa.retrieval.language``); paraphrases that share few words still score here.

* ``bigram_coverage``: for Chinese, the share of the question's character bigrams in the
  best passage, which forgives jieba segmenting question and document differently.

``judge`` combines them into one ``support`` score and compares it with a threshold
calibrated on the developer sets (see the constants and docs/architecture.md,
"Declining"): with a similarity, half coverage and half similarity; without one, coverage
and bigram coverage. (The best single sentence's coverage was tried too: it did not
separate the sets better than the passage's, so it is not computed.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qa.retrieval.lexical import analyze, han_bigrams
from qa.retrieval.retriever import Passage, RetrievalResult

# Calibrated on the developer sets (tests/qa/decline_calibration.py, `make eval`; see
# docs/architecture.md, "Declining"), with the packaged MiniLM (onnx-int8), k = 6:
# XQuAD en and zh questions against their own paragraphs (answerable) and off-topic ones
# (SciFact claims against XQuAD en and XQuAD questions against SciFact, 40 hand-written
# world-fact / other-domain questions per language, each language's against the other's).
# Each threshold was set a little above the 5th percentile of the answerable questions'
# support (false declines measured 0.033 en, 0.039 zh), a margin under the 0.05 target.
#: with a dense similarity: support = (coverage + similarity / SIMILARITY_SCALE) / 2
DENSE_THRESHOLD = 0.52
#: MiniLM cosines of a question and its answering chunk sit around 0.6 (median 0.59 on
#: XQuAD en): dividing by 0.7 puts them on the coverage's 0..1 scale
SIMILARITY_SCALE = 0.7
#: a chunk this close to the question supports it whatever its words: paraphrases ("How
#: many vacation days ..." against "27 days of paid annual leave", cosine 0.54) share few
#: terms. Off-topic questions reached it about as rarely as the mixed threshold (the
#: rates above are unchanged with it; 0.45 would let 2-4 % more off-topic ones through)
PARAPHRASE_SIMILARITY = 0.5
#: without one (a Chinese question, English embedder): 0.7 coverage + 0.3 bigram coverage
LEXICAL_THRESHOLD = 0.29
_BIGRAM_WEIGHT = 0.3


def support_score(evidence: Evidence) -> tuple[float, float]:
    """``(support, threshold)``: one number from the evidence and the bar it must reach."""
    if evidence.similarity is not None:
        similarity = evidence.similarity / SIMILARITY_SCALE
        return 0.5 * evidence.coverage + 0.5 * similarity, DENSE_THRESHOLD
    return (
        (1 - _BIGRAM_WEIGHT) * evidence.coverage + _BIGRAM_WEIGHT * evidence.bigram_coverage,
        LEXICAL_THRESHOLD,
    )


@dataclass(frozen=True)
class Evidence:
    coverage: float
    #: best cosine of a retrieved chunk; None when the dense ranking sat out
    similarity: float | None
    #: how many distinct content terms the question has (0: none to cover)
    terms: int
    #: share of the question's Chinese character bigrams in the best passage; the
    #: term coverage for a question without Chinese
    bigram_coverage: float = 0.0


def gather(question: str, passages: Sequence[Passage], term_idf: Mapping[str, float]) -> Evidence:
    """The evidence the retrieved ``passages`` give for ``question``."""
    q_terms = list(dict.fromkeys(analyze(question)))
    cosines = [p.dense_score for p in passages if p.dense_score is not None]
    similarity = max(cosines) if cosines else None
    if not q_terms or not passages:
        return Evidence(0.0, similarity, len(q_terms))
    q_bigrams = han_bigrams(question)
    top_idf = max(term_idf.values(), default=1.0)
    weights = {t: term_idf.get(t, top_idf) for t in q_terms}
    total = sum(weights.values()) or 1.0

    def covered(terms: set[str]) -> float:
        return sum(w for t, w in weights.items() if t in terms) / total

    coverage = bigrams = 0.0
    for p in passages:
        coverage = max(coverage, covered(set(analyze(p.text))))
        if q_bigrams:
            bigrams = max(bigrams, len(q_bigrams & han_bigrams(p.text)) / len(q_bigrams))
    return Evidence(
        coverage,
        similarity,
        len(q_terms),
        bigrams if q_bigrams else coverage,
    )


@dataclass(frozen=True)
class Verdict:
    supported: bool
    support: float
    evidence: Evidence


def judge(question: str, result: RetrievalResult) -> Verdict:
    """Whether ``result`` supports an answer to ``question`` (see the module docstring)."""
    evidence = gather(question, result.passages, result.term_idf)
    support, threshold = support_score(evidence)
    close = evidence.similarity is not None and evidence.similarity >= PARAPHRASE_SIMILARITY
    return Verdict(support >= threshold or close, support, evidence)


__all__ = [
    "DENSE_THRESHOLD",
    "LEXICAL_THRESHOLD",
    "PARAPHRASE_SIMILARITY",
    "Evidence",
    "Verdict",
    "gather",
    "judge",
    "support_score",
]
