"""The prompt: a fixed system message, numbered sources under a token budget, the question.

The system message (the chosen system prompt, then the decline rule no custom prompt can
remove) comes first and never changes between requests, so the generator can
reuse its KV cache; sources go into the user turn. When the sources do not fit the budget
the weakest passages are dropped first (retrieval order is by score), and the kept ones are
renumbered ``[1]..[k]`` in rank order so citation numbers stay small and dense.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qa.answering.decline import DECLINE_SENTENCES
from qa.errors import InvalidInput
from qa.messages import N_
from qa.retrieval.retriever import Passage

Message = dict[str, str]

DEFAULT_SYSTEM_PROMPT = (
    "You are docqa, an assistant that answers questions using only the numbered sources "
    "given with each question. Cite the sources you use with their numbers in square "
    "brackets, like [1] or [2][3], right after the statement they support. "
    "Answer in the same language as the question. Be concise."
)

# Appended to every system prompt, the built-in one or a custom one (an admin's default,
# a user's preference, an OpenAI client's system message), which cannot remove it: the
# decline sentences are spelled out so the reply is recognised
# (qa.answering.decline.is_decline) and the answer's outcome is "not_found".
DECLINE_INSTRUCTION = (
    "If the sources do not contain the answer, do not guess and do not cite: reply with "
    f'exactly this sentence and nothing else: "{DECLINE_SENTENCES["en"]}" (to a question '
    f'in Chinese: "{DECLINE_SENTENCES["zh"]}").'
)


def system_message(system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Message:
    """The system turn the model sees: ``system_prompt`` then the fixed decline rule."""
    return {"role": "system", "content": f"{system_prompt.rstrip()}\n\n{DECLINE_INSTRUCTION}"}


@dataclass(frozen=True)
class PromptPlan:
    messages: list[Message]
    #: the passages given to the model, in the order of their numbers [1]..[k]
    sources: list[Passage]
    #: passages left out to respect the budget
    dropped: int
    source_tokens: int


def source_label(p: Passage) -> str:
    title = p.document_title or p.document_name
    pages = (
        f"p. {p.page_start}" if p.page_start == p.page_end else f"pp. {p.page_start}-{p.page_end}"
    )
    return f"{title} ({pages})"


def format_source(n: int, p: Passage) -> str:
    return f"[{n}] {source_label(p)}\n{p.text.strip()}"


_SOURCES_HEAD = "Sources:\n\n"
_QUESTION_HEAD = "\n\nQuestion: "


def user_message(question: str, sources: Sequence[Passage]) -> str:
    if sources:
        body = "\n\n".join(format_source(i, p) for i, p in enumerate(sources, 1))
    else:
        body = "(no sources were found for this question)"
    return f"{_SOURCES_HEAD}{body}{_QUESTION_HEAD}{question.strip()}"


def asked_question(user_content: str) -> str:
    """The question of a user turn: a whole prompt turn (``user_message``, as an API client
    may send back) gives its question, any other turn is the question itself."""
    head, sep, question = user_content.rpartition(_QUESTION_HEAD)
    return question if sep and head.startswith(_SOURCES_HEAD) else user_content


def build_prompt(
    question: str,
    passages: Sequence[Passage],
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    history: Sequence[Message] = (),
) -> PromptPlan:
    """Fit as many of the strongest passages as ``budget_tokens`` allows into the prompt."""
    if not question.strip():
        raise InvalidInput(N_("the question is empty"))
    if budget_tokens < 1:
        raise InvalidInput("the source budget must be at least one token")
    ranked = sorted(range(len(passages)), key=lambda i: -passages[i].score)
    kept: set[int] = set()
    used = 0
    for i in ranked:
        cost = count_tokens(format_source(len(kept) + 1, passages[i])) + 2
        if used + cost > budget_tokens:
            continue  # a later, shorter passage may still fit
        kept.add(i)
        used += cost
    sources = [passages[i] for i in range(len(passages)) if i in kept]
    messages: list[Message] = [system_message(system_prompt)]
    messages.extend(history)
    messages.append({"role": "user", "content": user_message(question, sources)})
    return PromptPlan(messages, sources, len(passages) - len(sources), used)
