"""Saying "not in your documents": the fixed decline sentences, and recognising them.

Both answer modes decline with the same sentence in the question's language, so clients,
the stored chat and evaluations see one wording. A model is told (in the system prompt)
to reply with exactly that sentence when its sources do not answer the question;
``is_decline`` recognises the reply even when the model wraps it in a few words of its
own ("Sorry, I could not find this in the documents you can read.") or drops the final
stop, so the ``done`` event's ``outcome`` says ``not_found`` for it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from qa.retrieval.language import question_language

Outcome = Literal["answered", "not_found"]
ANSWERED: Outcome = "answered"
NOT_FOUND: Outcome = "not_found"
OUTCOMES: tuple[Outcome, ...] = (ANSWERED, NOT_FOUND)

#: the decline sentence per question language (``qa.retrieval.language``)
DECLINE_SENTENCES = {
    "en": "I could not find this in the documents you can read.",
    "zh": "在您可以访问的文档中没有找到相关内容。",
}

#: a reply is still a decline with this many characters (normalised) of its own around
#: the sentence: "Sorry," / "根据提供的资料，" fit, a paragraph of answer does not
_SLACK_CHARS = 40

_NOT_WORD = re.compile(r"[\W_]+")


def decline_sentence(question: str) -> str:
    """The decline sentence in the question's language."""
    return DECLINE_SENTENCES[question_language(question)]


def _normal(text: str) -> str:
    """NFKC, case-folded, curly quotes straightened, without punctuation and spaces."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return _NOT_WORD.sub("", text.replace("'", ""))


_NORMAL_SENTENCES = tuple(_normal(s) for s in DECLINE_SENTENCES.values())


def is_decline(reply: str) -> bool:
    """Whether a model's reply is the decline sentence (either language), give or take a
    few words around it. Citation markers like [1] do not make it an answer."""
    text = _normal(re.sub(r"\[\d+\]", "", reply))
    return any(s in text and len(text) - len(s) <= _SLACK_CHARS for s in _NORMAL_SENTENCES)


__all__ = [
    "ANSWERED",
    "DECLINE_SENTENCES",
    "NOT_FOUND",
    "OUTCOMES",
    "Outcome",
    "decline_sentence",
    "is_decline",
]
