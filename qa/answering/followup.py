"""Follow-up questions: what to retrieve for them, and whether the evidence supports them.

A follow-up ("And in Paris?", "Does that include breakfast?", "Why?") leans on the question
before it. Retrieved alone, its few words find little; judged alone, "Why?" is declined.
Without a model to rewrite it, the question is condensed mechanically: the previous
question of the conversation followed by this one ("What is the hotel limit in London? And
in Paris?") is what gets retrieved and judged by the evidence gate (``evidence.judge``).

That alone would let a change of subject through: "What is the capital of France?" after
the hotel question is "supported" by the hotel passage thanks to its first half (support
0.80 against the 0.52 bar on the samples). So the condensed question counts only when the
follow-up's *own* content terms are covered by the passages it found (idf-weighted, at
least ``FOLLOW_UP_COVERAGE``), or when it has none ("Why?", "Tell me more"). Measured on
the samples after the hotel question: the follow-ups about Paris, Tokyo, breakfast and
meals cover their own terms fully; the capital of France, the World Cup, baking bread and
a Chinese maths question cover none of theirs. A question that fails this is judged on
its own, like a first question: a follow-up that is a new, covered question is answered
from its own passages, and an off-topic one is declined before any model starts.

Known limit: a follow-up about something the documents never name ("And in Madrid?", when
the policy says "EUR 160 in most cities") covers none of its own terms and is declined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qa.answering.evidence import Verdict, gather, judge
from qa.answering.prompt import Message, asked_question
from qa.retrieval.retriever import RetrievalResult

#: the least idf-weighted share of a follow-up's own content terms that the passages found
#: for the condensed question must contain (genuine follow-ups measured 1.0, changes of
#: subject 0.0 on the samples; terms in between are the question's mixed cases)
FOLLOW_UP_COVERAGE = 0.5


@dataclass(frozen=True)
class Grounding:
    """What an answer stands on: the text retrieved, its passages and the gate's verdict."""

    query: str
    result: RetrievalResult
    verdict: Verdict
    #: both retrievals' time when the condensed question was tried first
    retrieval_ms: float


def previous_question(history: Sequence[Message]) -> str | None:
    """The last question the user asked before this one, if any."""
    for message in reversed(history):
        if message.get("role") == "user" and message.get("content", "").strip():
            return asked_question(message["content"])
    return None


def ground(
    question: str,
    history: Sequence[Message],
    retrieve: Callable[[str], RetrievalResult],
) -> Grounding:
    """Retrieve for ``question`` (condensed with the previous one when it follows up on
    it) and judge whether the passages support an answer."""
    spent = 0.0
    previous = previous_question(history)
    if previous is not None:
        condensed = f"{previous.strip()} {question.strip()}"
        result = retrieve(condensed)
        spent = result.timings.total_ms
        verdict = judge(condensed, result)
        own = gather(question, result)
        if verdict.supported and (own.terms == 0 or own.coverage >= FOLLOW_UP_COVERAGE):
            return Grounding(condensed, result, verdict, spent)
    result = retrieve(question)
    return Grounding(question, result, judge(question, result), spent + result.timings.total_ms)


__all__ = ["FOLLOW_UP_COVERAGE", "Grounding", "ground", "previous_question"]
