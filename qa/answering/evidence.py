"""Does anything retrieved support an answer? The evidence both answer modes decide on.

Retrieval always returns its k best passages, however poor: fused RRF scores are ranks,
not relevance, so "capital of France" against a travel handbook still gets six sources.
What tells a supported question from an unsupported one is how much of the *question*
the best passage covers:

* ``coverage``: the share of the question's content terms
  (``qa.retrieval.lexical.question_terms``: its words without the interrogatives it asks
  with), weighted by their idf over the searched collections, found in the best passage.
  A question's rare terms (a name, a place, a topic) carry it.
* ``similarity``: the best cosine between the question and a retrieved chunk, when the
  dense ranking took part (not for Chinese with the English MiniLM, see
  ``qa.retrieval.language``); paraphrases that share few words still score here.

``judge`` combines them into one ``support`` score and compares it with a threshold
calibrated on the developer sets (see the constants and docs/architecture.md,
"Declining"): with a similarity, half coverage and half similarity. Without one, words
are all the evidence there is, so two more rules make up for the missing meaning:

* a term no searched chunk contains at all (``RetrievalResult.absent_terms``) weighs
  ``ABSENT_WEIGHT`` times its idf: the documents never mention it, which says more than
  a term that is merely missing from the best passage. "钢琴有多少个琴键？" against
  documents without 钢琴 or 琴键 is about something they do not discuss;
* a question with two or more content terms needs two of them in one passage: one shared
  word (日本 in "日本的首都是哪里？" and in a passage on Japanese research teams) is
  a coincidence, not an answer.

(Tried and dropped: the best single sentence's coverage, and the share of the question's
character bigrams in a passage; neither separated the sets better than the above.)
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from qa.retrieval.lexical import analyze, question_terms
from qa.retrieval.retriever import Passage, RetrievalResult

# Calibrated on the developer sets (tests/qa/decline_calibration.py, `make eval`; see
# docs/architecture.md, "Declining"), with the packaged MiniLM (onnx-int8), k = 6:
# XQuAD en and zh questions against their own paragraphs (answerable) and off-topic ones
# (SciFact claims against XQuAD en and XQuAD questions against SciFact, 40 hand-written
# world-fact / other-domain questions per language, each language's against the other's).
# Each threshold was set a little above the 5th percentile of the answerable questions'
# support (false declines measured 0.033 en, 0.038 zh), a margin under the 0.05 target.
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
#: without one (a Chinese question, English embedder): support = coverage. On XQuAD zh
#: (48 articles) 0.20 declines 3.8 % of the answerable questions and 85-95 % of the
#: off-topic sets; the old rule (no absent weight, no two-term rule, interrogatives
#: counted) declined 72-75 % at the same false-decline rate
LEXICAL_THRESHOLD = 0.20
#: how much more a term the documents never contain weighs (lexical evidence only): 1
#: declined 82 % of the Chinese off-topic questions, 2: 90 %, 3: 92.5 %, 5 no more
ABSENT_WEIGHT = 3.0
#: lexical evidence: a question with this many content terms needs this many in a passage
MIN_COVERED_TERMS = 2


def support_score(evidence: Evidence) -> tuple[float, float]:
    """``(support, threshold)``: one number from the evidence and the bar it must reach."""
    if evidence.similarity is not None:
        similarity = evidence.similarity / SIMILARITY_SCALE
        return 0.5 * evidence.coverage + 0.5 * similarity, DENSE_THRESHOLD
    return evidence.coverage, LEXICAL_THRESHOLD


@dataclass(frozen=True)
class Evidence:
    coverage: float
    #: best cosine of a retrieved chunk; None when the dense ranking sat out
    similarity: float | None
    #: how many distinct content terms the question has (0: none to cover), a term inside
    #: another (起源 in 起源于, jieba's search mode gives both) not counted apart
    terms: int
    #: the most of those terms one passage contains, counted the same way
    covered: int = 0


def _outermost(terms: Set[str]) -> set[str]:
    """``terms`` without those inside another of them (起源, 源于 beside 起源于)."""
    return {t for t in terms if not any(t != other and t in other for other in terms)}


def _term_weights(question: str, result: RetrievalResult, dense: bool) -> dict[str, float]:
    """The question's content terms and what each weighs: its idf over the searched
    collections, times ``ABSENT_WEIGHT`` for a term no chunk contains when words are all
    the evidence there is (module docstring)."""
    q_terms = list(dict.fromkeys(question_terms(question)))
    top_idf = max(result.term_idf.values(), default=1.0)
    boost = 1.0 if dense else ABSENT_WEIGHT
    return {
        t: result.term_idf.get(t, top_idf) * (boost if t in result.absent_terms else 1.0)
        for t in q_terms
    }


def gather(question: str, result: RetrievalResult) -> Evidence:
    """The evidence ``result`` (retrieved for ``question`` or for a text containing it, see
    ``qa.answering.followup``) gives for ``question``."""
    passages = result.passages
    cosines = [p.dense_score for p in passages if p.dense_score is not None]
    similarity = max(cosines) if cosines else None
    weights = _term_weights(question, result, similarity is not None)
    terms = len(_outermost(set(weights)))
    if not weights or not passages:
        return Evidence(0.0, similarity, terms)
    total = sum(weights.values()) or 1.0
    coverage, covered = 0.0, 0
    for p in passages:
        found = set(weights).intersection(analyze(p.text))
        coverage = max(coverage, sum(weights[t] for t in found) / total)
        covered = max(covered, len(_outermost(found)))
    return Evidence(coverage, similarity, terms, covered)


def passage_support(question: str, result: RetrievalResult) -> list[float]:
    """Each passage's own support for ``question``, on ``support_score``'s scale: the same
    formula fed with that passage's coverage and cosine instead of the best ones.

    A passage the dense list missed is given the lowest cosine retrieved, an upper bound
    of its own (the dense list holds the closest chunks)."""
    passages = result.passages
    cosines = [p.dense_score for p in passages if p.dense_score is not None]
    dense = bool(cosines)
    weights = _term_weights(question, result, dense)
    total = sum(weights.values()) or 1.0
    out: list[float] = []
    for p in passages:
        coverage = sum(weights[t] for t in set(weights).intersection(analyze(p.text))) / total
        cosine = (p.dense_score if p.dense_score is not None else min(cosines)) if dense else None
        out.append(support_score(Evidence(coverage, cosine, len(weights)))[0])
    return out


def focus(question: str, result: RetrievalResult, ratio: float) -> list[Passage]:
    """The passages whose own support is at least ``ratio`` times the best one's, in
    retrieval order: a model's prompt is as short as the evidence allows (every passage
    dropped is prefill saved) and holds no off-topic filler to quote from. The ratio is
    a setting (``Settings.focus_ratio``, where its calibration is told)."""
    passages = result.passages
    if not passages or ratio <= 0:
        return list(passages)
    support = passage_support(question, result)
    bar = ratio * max(support)
    return [p for p, s in zip(passages, support, strict=True) if s >= bar]


@dataclass(frozen=True)
class Verdict:
    supported: bool
    support: float
    evidence: Evidence


def judge(question: str, result: RetrievalResult) -> Verdict:
    """Whether ``result`` supports an answer to ``question`` (see the module docstring)."""
    evidence = gather(question, result)
    support, threshold = support_score(evidence)
    if evidence.similarity is not None:
        supported = support >= threshold or evidence.similarity >= PARAPHRASE_SIMILARITY
    else:
        enough_terms = evidence.covered >= min(MIN_COVERED_TERMS, evidence.terms)
        supported = support >= threshold and enough_terms
    return Verdict(supported, support, evidence)


__all__ = [
    "ABSENT_WEIGHT",
    "DENSE_THRESHOLD",
    "LEXICAL_THRESHOLD",
    "MIN_COVERED_TERMS",
    "PARAPHRASE_SIMILARITY",
    "Evidence",
    "Verdict",
    "focus",
    "gather",
    "judge",
    "passage_support",
    "support_score",
]
