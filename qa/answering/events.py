"""The answer stream's events, and the one collector that folds a stream into a result.

``AnswerService.ask`` (and ``QuestionService.ask`` around it) yields these, in this order::

    Sources        the passages given to the model, numbered [1]..[k], before the first token
    Queued*        the position in the model queue while waiting (generative mode only)
    Token*         answer text as it is generated
    Citations      each [n] checked against the sources, mapped to page and char span
    Done           mode, outcome (answered / not_found), timings, token counts
    ErrorEvent     instead of the rest, when something fails after the stream started

``to_json()`` is the wire form every client sees (SSE ``data``, ``docqa ask --json``), the
same for every consumer. ``AnswerCollector`` is the only place that folds a stream: the
chat record, the JSON answer of ``/api/v1/ask``, the OpenAI-compatible endpoint and the
command line all use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from qa.answering.decline import ANSWERED, Outcome
from qa.errors import DocqaError, from_wire

JSON = dict[str, Any]

#: what a client needs to show and link a citation; a stored answer and the OpenAI response
#: keep only these (the passage text is in the DB already)
CITATION_SOURCE_FIELDS = (
    "n",
    "document_id",
    "document_name",
    "title",
    "collection",
    "page_start",
    "page_end",
    "char_start",
    "char_end",
)


def slim_source(source: JSON) -> JSON:
    """A source of a ``Sources`` event without its passage text."""
    return {k: source.get(k) for k in CITATION_SOURCE_FIELDS}


@dataclass(frozen=True)
class Sources:
    type: ClassVar[str] = "sources"
    sources: list[JSON]
    #: passages retrieved but left out of the prompt by the token budget (generative only)
    dropped: int | None = None

    def to_json(self) -> JSON:
        out: JSON = {"type": self.type, "sources": self.sources}
        if self.dropped is not None:
            out["dropped"] = self.dropped
        return out


@dataclass(frozen=True)
class Queued:
    type: ClassVar[str] = "queued"
    position: int

    def to_json(self) -> JSON:
        return {"type": self.type, "position": self.position}


@dataclass(frozen=True)
class Token:
    type: ClassVar[str] = "token"
    text: str

    def to_json(self) -> JSON:
        return {"type": self.type, "text": self.text}


@dataclass(frozen=True)
class Citations:
    type: ClassVar[str] = "citations"
    citations: list[JSON]
    invalid: int
    #: the answer with invalid citations removed
    text: str
    highlights: list[JSON]

    def to_json(self) -> JSON:
        return {
            "type": self.type,
            "citations": self.citations,
            "invalid": self.invalid,
            "text": self.text,
            "highlights": self.highlights,
        }


@dataclass(frozen=True)
class Done:
    type: ClassVar[str] = "done"
    mode: str
    finish_reason: str
    retrieval_ms: float
    #: "answered", or "not_found" when the documents did not support an answer and the
    #: answer is the decline sentence (qa.answering.decline)
    outcome: Outcome = ANSWERED
    #: the language model that wrote the answer (``Generator.label``); None when none did
    model: str | None = None
    #: the stored chat message of this answer (``QuestionService``; None outside a chat)
    message_id: int | None = None
    time_to_first_token_ms: float | None = None
    queue_wait_ms: float | None = None
    tokens_per_s: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    prefilled_tokens: int | None = None
    completion_tokens: int | None = None
    #: prompt-lookup speculation: tokens drafted, how many the model kept, and the ratio
    #: (left out when nothing was drafted)
    draft_tokens: int | None = None
    accepted_draft_tokens: int | None = None
    draft_acceptance: float | None = None

    def fields(self) -> JSON:
        """The figures that were measured (a field a mode does not measure is left out)."""
        names = (
            "mode",
            "model",
            "message_id",
            "outcome",
            "finish_reason",
            "retrieval_ms",
            "queue_wait_ms",
            "time_to_first_token_ms",
            "tokens_per_s",
            "prompt_tokens",
            "cached_tokens",
            "prefilled_tokens",
            "completion_tokens",
            "draft_tokens",
            "accepted_draft_tokens",
            "draft_acceptance",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def to_json(self) -> JSON:
        return {"type": self.type, **self.fields()}


@dataclass(frozen=True)
class ErrorEvent:
    type: ClassVar[str] = "error"
    error: DocqaError

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def message(self) -> str:
        return self.error.message

    def to_json(self) -> JSON:
        return {"type": self.type, **self.error.to_wire()}

    @classmethod
    def from_json(cls, wire: JSON) -> ErrorEvent:
        return cls(from_wire(wire))


AnswerEvent = Sources | Queued | Token | Citations | Done | ErrorEvent


@dataclass
class AnswerCollector:
    """Folds events into what was said so far; ``feed`` returns the event to pass it on."""

    sources: list[JSON] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    citations: Citations | None = None
    done: Done | None = None
    error: ErrorEvent | None = None

    def feed(self, event: AnswerEvent) -> AnswerEvent:
        if isinstance(event, Sources):
            self.sources = event.sources
        elif isinstance(event, Token):
            self.tokens.append(event.text)
        elif isinstance(event, Citations):
            self.citations = event
        elif isinstance(event, Done):
            self.done = event
        elif isinstance(event, ErrorEvent):
            self.error = event
        return event

    def feed_all(self, events: Iterable[AnswerEvent]) -> AnswerCollector:
        for event in events:
            self.feed(event)
        return self

    @property
    def text(self) -> str:
        """The answer: checked text once citations arrived, else the tokens so far."""
        return self.citations.text if self.citations is not None else "".join(self.tokens)

    @property
    def complete(self) -> bool:
        return self.done is not None and self.citations is not None and self.error is None

    @property
    def outcome(self) -> Outcome | None:
        """``answered`` / ``not_found`` once the answer is done, else None (cut off)."""
        return self.done.outcome if self.done is not None else None

    @property
    def finish_reason(self) -> str:
        """How the answer ended: ``error``, ``cancelled`` (cut off) or the model's reason."""
        if self.error is not None:
            return "error"
        return self.done.finish_reason if self.done is not None else "cancelled"
