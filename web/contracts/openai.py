"""The shapes of the OpenAI-compatible ``/v1``: what OpenAI's clients send and read, plus
docqa's ``citations``, ``sources`` and ``outcome``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WrapValidator

from qa.answering.decline import Outcome
from qa.limits import MAX_CHAT_MESSAGES, MAX_MODEL_NAME_CHARS
from web.contracts.api import Citation, MaxTokens, SourceRef, Temperature, TopP
from web.contracts.base import Body, Shape, one_message

SYSTEM_ROLES = ("system", "developer")  # "developer" is the newer OpenAI name
TURN_ROLES = ("user", "assistant")


class TextPart(Body):
    type: Literal["text"]
    text: str


Content = Annotated[
    str | list[TextPart] | None,
    WrapValidator(one_message("must be text (images and files are not supported)")),
    Field(description="text, or a list of {type: text, text} parts"),
]


class ChatCompletionMessage(Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Content = None  # None: an assistant turn that only called tools

    def text(self) -> str:
        """Plain text, or the text parts joined."""
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(Body):
    include_usage: bool | None = None


class ChatCompletionRequest(Body):
    """other OpenAI fields are accepted and ignored"""

    model: str = Field(
        max_length=MAX_MODEL_NAME_CHARS, description="a model id from GET /v1/models"
    )
    messages: list[ChatCompletionMessage] = Field(
        min_length=1,
        max_length=MAX_CHAT_MESSAGES,
        description=(
            "the last message must be the user's question; earlier user and assistant "
            "messages are the history, the first system message the system prompt"
        ),
    )
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = Field(None, description="same as max_tokens")
    seed: int | None = None
    n: Annotated[
        Literal[1] | None,
        WrapValidator(one_message("must be 1: docqa gives one answer per question")),
    ] = None


class Model(Shape):
    id: str = Field(
        pattern=r"^docqa(/[a-z0-9]+(-[a-z0-9]+)*)?$",
        description="'docqa' or 'docqa/<collection slug>': lower-case ASCII letters,"
        " digits and '-', safe in a URL",
    )
    object: Literal["model"]
    created: int
    owned_by: Literal["docqa"]
    name: str = Field(description="for people: 'docqa: <collection name>'")


class ModelList(Shape):
    object: Literal["list"]
    data: list[Model]


class Usage(Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(Shape):
    role: Literal["assistant"]
    content: str


class Choice(Shape):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(Shape):
    id: str = Field(pattern="^chatcmpl-")
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice] = Field(min_length=1, max_length=1)
    usage: Usage = Field(description="model tokens; zeros when no model ran (extractive)")
    citations: list[Citation]
    sources: list[SourceRef]
    outcome: Outcome = Field(
        description="docqa's: not_found when the documents did not support an answer (the"
        " content is then the decline sentence and the sources are the closest passages)"
    )


class Delta(Shape):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(Shape):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(Shape):
    """Sent as 'data: <chunk JSON>' lines: first delta {role: assistant}, then one content
    delta per token, then a chunk with finish_reason, citations and sources, then
    'data: [DONE]'. A failure mid-stream is sent as 'data: {"error": {...}}' before
    [DONE]."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = Field(
        None,
        description="only in the last chunk with stream_options.include_usage (zeros when"
        " no model ran)",
    )
    citations: list[Citation] = Field([], description="final chunk only")
    sources: list[SourceRef] = Field([], description="final chunk only")
    outcome: Outcome | None = Field(None, description="final chunk only: answered / not_found")
