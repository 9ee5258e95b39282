"""The shapes of ``/api/v1``: request bodies and query strings (validated) and responses
(documented, and checked against real responses by the contract test).

Limits come from ``qa.limits`` and value sets from the modules that own them; the
services check their own rules again (the CLI and the portal call them too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, RootModel

from qa.accounts.access import PERMISSIONS
from qa.accounts.users import LANGUAGES, ROLES, THEMES
from qa.answering.chat_sources import ReadMessage
from qa.answering.chats import MAX_TITLE_CHARS, MESSAGE_ROLES
from qa.answering.decline import Outcome
from qa.answering.feedback import MAX_COMMENT_CHARS
from qa.limits import (
    MAX_ANSWER_TOKENS,
    MAX_COLLECTION_IDS,
    MAX_COLLECTION_NAME_CHARS,
    MAX_ID_CHARS,
    MAX_JOBS_LISTED,
    MAX_QUESTION_CHARS,
    MAX_SOURCES,
    MAX_SUMMARY_STATEMENTS,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TEMPERATURE,
)
from qa.store.db.models import Chat as ChatRow
from qa.store.db.models import ChatMessage as MessageRow
from qa.store.db.models import DocStatus, iso_utc
from qa.store.db.models import Document as DocumentRow
from qa.summaries.jobs import COLLECTION, DOCUMENT, STATUSES, SummaryJobDetail, SummaryJobView
from web.contracts.base import Body, Id, Query, Shape, enum_of
from web.i18n import localized

ANSWER_MODES = ("extractive", "generative")
SUMMARY_TARGETS = (DOCUMENT, COLLECTION)
Timestamp = Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]
ChunkId = Annotated[
    int, Field(description="64-bit: beyond JavaScript's exact integer range, compare as text")
]
#: what asking can answer besides 200 (here and on /v1): a bad body, a collection or model
#: the caller may not read, a body over its cap, the model queue full
QUESTION_ERRORS = (400, 404, 413, 503)
CollectionIds = Annotated[list[Id], Field(max_length=MAX_COLLECTION_IDS)]

# -- sampling options, shared by /ask, the preferences and /v1/chat/completions ----------

Temperature = Annotated[float, Field(ge=0, le=MAX_TEMPERATURE)]
TopP = Annotated[float, Field(gt=0, le=1)]
MaxTokens = Annotated[int, Field(ge=1, le=MAX_ANSWER_TOKENS)]
SystemPrompt = Annotated[str, Field(max_length=MAX_SYSTEM_PROMPT_CHARS)]


class ErrorDetail(Shape):
    code: str = Field(description="stable machine-readable code, e.g. not_found, invalid_input")
    message: str = Field(description="what went wrong, for people")
    type: (
        Literal[
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "rate_limit_error",
            "server_error",
        ]
        | None
    ) = Field(None, description="OpenAI-style error type; only on /v1 endpoints")


class Error(Shape):
    error: ErrorDetail


# -- collections and documents -------------------------------------------------------------


class CollectionName(Body):
    name: str = Field(
        description="1-100 letters, digits, spaces, '.', '-' or '_'",
        max_length=MAX_COLLECTION_NAME_CHARS,
    )


class Collection(Shape):
    id: int
    name: str
    documents: int
    chunks: int
    permission: str = enum_of(PERMISSIONS, description="the caller's")


class CollectionList(Shape):
    collections: list[Collection]


class CollectionDeleted(Shape):
    deleted: bool
    id: int
    documents: int = 0


class Queued(Shape):
    id: int
    status: Literal["queued"] = "queued"


class DocumentFilter(Query):
    status: str | None = enum_of(
        DocStatus.ALL, default=None, description="only documents with this status"
    )


class Document(Shape):
    id: str
    collection_id: int
    name: str = Field(description="the uploaded file name")
    title: str | None = None
    type: str | None = Field(None, description="detected file type")
    size_bytes: int | None = None
    status: str = enum_of(DocStatus.ALL)
    error: str | None = Field(description="why processing failed (status failed)")
    error_code: str | None = Field(
        None, description="the failure's kind: password_protected, parser_crashed, ..."
    )
    retryable: bool = Field(
        False, description="failed, and a retry may help (not when the file is the problem)"
    )
    pages: int | None = None
    chunks: int | None = None
    ocr_pages: int = Field(0, description="pages whose text was read by OCR")
    attempts: int = 0
    created_at: Timestamp = None
    updated_at: Timestamp = None

    @classmethod
    def of(cls, doc: DocumentRow) -> Document:
        return cls(
            id=doc.id,
            collection_id=doc.collection_id,
            name=doc.original_name,
            title=doc.title,
            type=doc.detected_type,
            size_bytes=doc.size_bytes,
            status=doc.status,
            error=localized(reason) if (reason := doc.reason) is not None else None,
            error_code=doc.error_code,
            retryable=doc.retryable,
            pages=doc.page_count,
            chunks=doc.chunk_count,
            ocr_pages=doc.ocr_pages or 0,
            attempts=doc.attempts,
            created_at=iso_utc(doc.created_at),
            updated_at=iso_utc(doc.updated_at),
        )


class DocumentList(Shape):
    documents: list[Document]


class Upload(Shape):
    name: str
    document_id: str | None = Field(description="null when refused before storing")
    status: str
    created: bool = Field(description="false: the same bytes were there already")
    error: str | None

    @classmethod
    def of(cls, upload: object) -> Upload:
        """The reply for one stored or refused file, its reason in the reader's language."""
        reply = cls.of_fields(upload)
        error = getattr(upload, "error", None)
        return reply.model_copy(update={"error": localized(error) if error else None})


class UploadList(Shape):
    uploads: list[Upload]


class DocumentDeleted(Shape):
    deleted: bool
    id: str


class Retried(Shape):
    id: str
    queued: int = Field(0, description="0 when indexed")


class Page(Shape):
    number: int
    text: str
    boxes: list[list[float]] | None = Field(
        None,
        description=(
            "a page read by OCR: its lines, each [start, end, left, top, right, bottom]:"
            " text[start:end] sits in that box, given as fractions of the page's width and"
            " height; null for a page read from its text layer"
        ),
    )


class DocumentPages(Shape):
    document: Document
    pages: list[Page]


# -- asking ----------------------------------------------------------------------------------


class AskRequest(Body):
    question: str = Field(max_length=MAX_QUESTION_CHARS)
    collection_ids: CollectionIds | None = Field(
        None, description="empty or absent: every collection the caller may read"
    )
    chat_id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="store the turn in this chat; its history is used",
    )
    stream: bool | None = Field(
        None, description="answer as server-sent events (default: when Accept asks for them)"
    )
    k: int | None = Field(None, ge=1, le=MAX_SOURCES, description="passages to retrieve")
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    system_prompt: SystemPrompt | None = None


class SourceRef(Shape):
    """a source without its passage text"""

    n: int = Field(description="the number [n] used in the answer")
    document_id: str
    document_name: str
    title: str | None = None
    collection: str = ""
    page_start: int
    page_end: int
    char_start: int = Field(description="offset of the passage in the page text of page_start")
    char_end: int


class Source(SourceRef):
    """a passage given to the model, numbered as the answer cites it"""

    chunk_id: ChunkId = 0
    char_start: int = Field(0, description="offset of the passage in the page text")
    char_end: int = 0
    heading_path: list[str] = Field(default_factory=list)
    score: float = 0
    text: str = Field("", description="the passage given to the model")


class Citation(Shape):
    """a valid [n] of the answer, mapped to its source"""

    n: int
    chunk_id: ChunkId = 0
    document_id: str
    document_name: str
    page_start: int
    page_end: int
    char_start: int = 0
    char_end: int = 0


class Highlight(Shape):
    """the exact span of a quoted sentence (extractive answers)"""

    n: int
    document_id: str
    page: int
    char_start: int
    char_end: int


class AskResponse(Shape):
    answer: str = Field(description="validated answer text with [n] markers")
    sources: list[Source]
    citations: list[Citation]
    invalid: int = Field(0, description="citation markers that named no source")
    highlights: list[Highlight] = Field(default_factory=list)
    mode: str = enum_of(ANSWER_MODES)
    outcome: Outcome = Field(
        description="not_found: the documents did not support an answer; the answer is the"
        " decline sentence in the question's language and the sources are the closest passages"
    )
    chat_id: str | None = None
    done: dict[str, Any] = Field(
        {}, description="finish_reason and timings (retrieval_ms, tokens_per_s, ...)"
    )


class SourcesEvent(Shape):
    type: Literal["sources"]
    sources: list[Source] = Field(default_factory=list)


class QueuedEvent(Shape):
    type: Literal["queued"]
    position: int


class TokenEvent(Shape):
    type: Literal["token"]
    text: str


class CitationsEvent(Shape):
    type: Literal["citations"]
    citations: list[Citation]
    invalid: int = 0
    text: str
    highlights: list[Highlight] = Field(default_factory=list)


class DoneEvent(Shape):
    type: Literal["done"]
    mode: str
    model: str | None = Field(None, description="the language model that wrote the answer")
    message_id: int | None = Field(
        None, description="the answer's message in the chat (for its feedback); null outside one"
    )
    outcome: Outcome
    finish_reason: str | None = None
    retrieval_ms: float | None = None
    time_to_first_token_ms: float | None = None
    tokens_per_s: float | None = None


class ErrorEvent(Shape):
    type: Literal["error"]
    code: str
    message: str = ""


class AskEvent(
    RootModel[
        Annotated[
            SourcesEvent | QueuedEvent | TokenEvent | CitationsEvent | DoneEvent | ErrorEvent,
            Field(discriminator="type"),
        ]
    ]
):
    """One server-sent event: 'event: <type>' and 'data: <this object as JSON>'.
    Order: sources, queued*, token*, citations, done; or error instead of the rest."""


# -- chats and the signed-in user -----------------------------------------------------------


class ChatCreate(Body):
    title: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    collection_ids: CollectionIds | None = Field(
        None, description="collections to ask in (each must be readable)"
    )


class Chat(Shape):
    id: str
    title: str
    collection_ids: list[int]
    created_at: Timestamp = None
    updated_at: Timestamp = None

    @classmethod
    def of(cls, chat: ChatRow) -> Chat:
        return cls(
            id=chat.id,
            title=chat.title,
            collection_ids=list(chat.collection_ids or []),
            created_at=iso_utc(chat.created_at),
            updated_at=iso_utc(chat.updated_at),
        )


class ChatEnvelope(Shape):
    chat: Chat


class ChatList(Shape):
    chats: list[Chat]


class ChatQuery(Query):
    q: str | None = Field(
        None, max_length=200, description="only chats whose title or a message contains this"
    )


class Feedback(Shape):
    rating: Literal["up", "down"]
    comment: str = ""


class FeedbackBody(Body):
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)


class FeedbackEnvelope(Shape):
    feedback: Feedback


class ChatMessage(Shape):
    id: int
    role: str = enum_of(MESSAGE_ROLES)
    content: str
    meta: dict[str, Any] = Field(
        description="sources, citations, highlights, mode, model, finish_reason. A source or"
        " citation whose document the caller can no longer read (grant revoked, document"
        " deleted) is"
        ' only {"n": n, "available": false}, and its highlights are left out'
    )
    created_at: Timestamp = None
    unavailable_sources: list[int] = Field(
        default_factory=list,
        description="the [n] of sources no longer available to the caller (redacted in meta)",
    )
    outcome: Outcome | None = Field(
        None,
        description="an answer's outcome: not_found when the documents did not support an"
        " answer (the content is then the decline sentence and the sources are the closest"
        " passages); null for questions, answers cut off, and answers stored before outcomes",
    )
    feedback: Feedback | None = Field(None, description="the caller's vote on this answer")

    @classmethod
    def of(cls, message: MessageRow | ReadMessage, feedback: Feedback | None = None) -> ChatMessage:
        return cls(
            feedback=feedback,
            id=message.id,
            role=message.role,
            content=message.content,
            meta=message.meta or {},
            created_at=iso_utc(message.created_at),
            unavailable_sources=(
                message.unavailable_sources if isinstance(message, ReadMessage) else []
            ),
            outcome=_outcome(message.outcome),
        )


def _outcome(stored: str | None) -> Outcome | None:
    """A stored outcome as the contract's type (the column holds only these values)."""
    return "not_found" if stored == "not_found" else "answered" if stored == "answered" else None


class ChatWithMessages(Shape):
    chat: Chat
    messages: list[ChatMessage]


class Preferences(Body):
    """only the keys the user set; null resets a key to the default"""

    # A misspelt preference would otherwise be dropped without a word.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    system_prompt: SystemPrompt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    theme: str | None = enum_of(THEMES, default=None)
    language: str | None = enum_of(LANGUAGES, default=None)


class PreferencesEnvelope(Shape):
    preferences: Preferences


class MeUser(Shape):
    id: int
    username: str
    display_name: str | None = None
    role: str = enum_of(ROLES)


class Me(Shape):
    user: MeUser
    role: str = enum_of(ROLES)
    preferences: Preferences
    defaults: Preferences = Field(description="what each unset preference means")
    collections: list[Collection]
    answer_mode: str = enum_of(ANSWER_MODES)


# -- summaries -------------------------------------------------------------------------------


class SummaryRequest(Body):
    """exactly one of document_id and collection_id"""

    document_id: str | None = Field(
        None, max_length=MAX_ID_CHARS, description="summarize this document"
    )
    collection_id: Id | None = Field(
        None, description="summarize this collection (admins and editors)"
    )
    max_statements: int | None = Field(None, ge=1, le=MAX_SUMMARY_STATEMENTS)


class SummaryQuery(Query):
    limit: int = Field(50, ge=1, le=MAX_JOBS_LISTED)


class StatementSpan(Shape):
    """extractive statements: the quoted sentence in the page text"""

    page: int
    char_start: int
    char_end: int


class SummaryStatement(Shape):
    text: str
    document_id: str
    document_name: str
    pages: list[int] = Field(min_length=1, description="the pages it comes from")
    span: StatementSpan | None = None


class SummaryWindow(Shape):
    pages: list[int]


class DocumentSummary(Shape):
    document_id: str
    document_name: str
    statements: list[SummaryStatement]


class SkippedDocument(Shape):
    document_id: str
    document_name: str
    status: str = enum_of(DocStatus.ALL)


class SummaryResult(Shape):
    kind: str = enum_of(SUMMARY_TARGETS)
    title: str
    model: str = enum_of(ANSWER_MODES)
    label: str = Field(description="how the summary was made, for its readers")
    statements: list[SummaryStatement] = Field(
        description="the summary (a collection's: the synthesis across documents)"
    )
    markdown: str
    subject: str | None = Field(
        None, description="what a document summary is of (its title), for pages to title it"
    )
    document_id: str | None = None
    document_name: str | None = None
    collection_id: int | None = None
    collection_name: str | None = None
    windows: list[SummaryWindow] = Field(default_factory=list)
    documents: list[DocumentSummary] = Field(
        [], description="a collection summary's per-document summaries"
    )
    skipped: list[SkippedDocument] = Field(default_factory=list)
    timings: dict[str, Any] = Field(description="total_s, generations, queue_wait_s")


class SummaryJob(Shape):
    id: str
    target: str = enum_of(SUMMARY_TARGETS)
    name: str = Field(description="the document's or collection's name")
    document_id: str | None = None
    collection_id: int | None = None
    status: str = enum_of(STATUSES)
    progress: float = Field(ge=0, le=1)
    error: str | None = Field(description="why it failed or was cancelled")
    cancel_requested: bool
    submitted_by: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    created_at: Timestamp = None
    updated_at: Timestamp = None
    result: SummaryResult | None = Field(
        None, description="only on GET /summaries/{job_id}; null until done"
    )


class JobEnvelope(Shape):
    only_given = True
    job: SummaryJob

    @classmethod
    def of(cls, job: SummaryJobDetail) -> JobEnvelope:
        return cls(job=SummaryJob.of_fields(job))


class JobList(Shape):
    only_given = True
    jobs: list[SummaryJob] = Field(description="without their results")

    @classmethod
    def of(cls, jobs: Sequence[SummaryJobView]) -> JobList:
        return cls(jobs=[SummaryJob.of_fields(j) for j in jobs])
