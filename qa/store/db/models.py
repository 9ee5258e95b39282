"""Tables of the metadata DB, the source of truth (indexes are derived from it).

Collection, document and user ids are never reused (migrations 0005, 0007): an old chat,
summary or audit entry that names a deleted one can never come to mean a newer one.
Collections and users count up (SQLite AUTOINCREMENT, a PostgreSQL sequence); a document
id is random, and the same bytes in the same collection are found by (collection, sha256),
unique. A chunk id derives from (document id, position, text), so a redelivered or
repeated ingest of a document writes the same rows again instead of new ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from qa.messages import restored


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 with the UTC offset: SQLite hands stored times back without a zone."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()


class Base(DeclarativeBase):
    pass


class DocStatus:
    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    FAILED = "failed"
    ALL = (QUEUED, PROCESSING, INDEXED, FAILED)


class Collection(Base):
    __tablename__ = "collections"
    # Without AUTOINCREMENT SQLite hands the highest id out again once it is deleted.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: a reindex asked for and not yet published (cleared by the publish that started
    #: after it): the row, not the broker message, carries the request (migration 0008)
    reindex_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )

    documents: Mapped[list[Document]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def index_key(self) -> str:
        # Index directories are named by id, never by the (renamable, user-typed) name.
        return f"c{self.id}"


#: failures a retry cannot fix: the file itself is the problem, or it outgrows a limit
#: that a second try would hit again (an unknown or transient failure may be retried)
UNRETRYABLE_ERRORS = frozenset(
    {
        "password_protected",
        "unsupported_type",
        "no_text",
        "hostile_file",
        "parse_failed",
        "parse_limit",
        "time_limit",
    }
)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "sha256", name="uq_document_content"),
        Index("ix_documents_collection_name", "collection_id", "original_name"),
        Index("ix_documents_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    #: the client's name, sanitized; only ever displayed, never used as a path
    original_name: Mapped[str] = mapped_column(String(1024))
    detected_type: Mapped[str | None] = mapped_column(String(32), default=None)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=DocStatus.QUEUED)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: the failure's kind (the error's code: "password_protected", "parser_crashed", ...;
    #: migration 0011); None for failures recorded before it existed
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    #: ``error`` as a template and values (``qa.messages.Translatable.to_wire``, migration
    #: 0013), so it can be shown in the reader's language; None: English only
    error_i18n: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    title: Mapped[str | None] = mapped_column(String(1024), default=None)
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    #: pages whose text was read by OCR (migration 0012): "indexed (OCR)" in the console
    ocr_pages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the worker node that last started processing it (``docqa worker --name``): its
    #: restart, or the expiry of its heartbeat, hands the document on (migration 0008)
    claimed_by: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    collection: Mapped[Collection] = relationship(back_populates="documents")

    @property
    def reason(self) -> str | None:
        """Why it failed: the stored sentence, translatable where a template is stored."""
        return None if self.error is None else restored(self.error, self.error_i18n)

    @property
    def retryable(self) -> bool:
        """A failed document a retry may fix: not one whose file is the problem."""
        return self.status == DocStatus.FAILED and self.error_code not in UNRETRYABLE_ERRORS


class PageText(Base):
    """Page text as the loader produced it: chunk char offsets point into this."""

    __tablename__ = "pages"

    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    #: an OCR'd page's lines, each [start, end, left, top, right, bottom]: text[start:end]
    #: sits in that box (fractions of the page); NULL for a page read from its text layer
    boxes: Mapped[list[list[float]] | None] = mapped_column(JSON, default=None)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        Index("ix_chunks_document", "document_id"),
        Index("ix_chunks_collection", "collection_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    page_start: Mapped[int] = mapped_column(Integer)
    page_end: Mapped[int] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    heading_path: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_count: Mapped[int] = mapped_column(Integer)
    #: analyzed lexical terms, space-joined; BM25 is rebuilt from these without re-analysis
    terms: Mapped[str] = mapped_column(Text)


class Embedding(Base):
    __tablename__ = "embeddings"

    chunk_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    #: float32 little-endian, L2-normalized
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Blob(Base):
    """A stored original (migration 0005): the row an upload and a release of the same bytes
    both lock before they touch its file, so they take turns (``qa.store.blob_refs``)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: last time an upload or a release held it
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"), Index("ix_jobs_user", "user_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), default=None
    )
    document_id: Mapped[str | None] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), default=None
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    # (migration 0003) who submitted the job; a job goes with its owner's account
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_jobs_user"), default=None
    )
    #: a column, not a payload key: a cancel request is then one atomic UPDATE that can
    #: never overwrite (or be overwritten by) the result the running job writes
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


# --- accounts, access, chats, audit, app config (migration 0002) -----------------------------
#
# These tables have no ORM relationships on purpose: services return rows after their
# session is closed, and a lazy load on a detached row would fail at the caller. Deletes
# rely on ON DELETE CASCADE in the database (SQLite runs with foreign_keys=ON).


class User(Base):
    __tablename__ = "users"
    # Without AUTOINCREMENT SQLite hands the highest id out again once it is deleted, and
    # the audit log (filtered by user id) outlives the account (migration 0007).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200), default=None)
    #: self-describing scrypt string, see qa.accounts.users.hash_password
    password_hash: Mapped[str] = mapped_column(String(255))
    #: "admin" | "editor" | "reader" (qa.accounts.users.ROLES)
    role: Mapped[str] = mapped_column(String(16), default="reader")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: validated by qa.accounts.users (system_prompt, temperature, top_p, max_tokens, theme)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: "local" (a password in password_hash) or the directory that signs the user in
    #: ("ldap"); a directory account has no usable local password (migration 0009)
    auth_source: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    #: the account's name in its directory (an LDAP DN), as of the last sign-in or sync
    external_id: Mapped[str | None] = mapped_column(String(1024), default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    #: when the directory last confirmed the account (sign-in or re-sync)
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


# "Alice" and "alice" are the same person to everyone reading a list of users, so the
# database itself refuses the second one, even when two requests race.
Index("uq_users_username_lower", func.lower(User.username), unique=True)


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


Index("uq_groups_name_lower", func.lower(Group.name), unique=True)


class GroupMember(Base):
    __tablename__ = "group_members"
    # The primary key serves lookups by group; this index serves "groups of a user",
    # which every access check runs.
    __table_args__ = (Index("ix_group_members_user", "user_id"),)

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class DirectoryGroupMap(Base):
    """A directory group whose members belong to a docqa group (migration 0009).

    For an account signed in through ``source``, membership of every docqa group that has
    a mapping from that source follows the directory: it is set at each sign-in and
    re-sync, and a manual change to it lasts only until then. Other groups stay manual.
    """

    __tablename__ = "directory_group_maps"
    __table_args__ = (
        UniqueConstraint("source", "external_group", "group_id", name="uq_directory_group_maps"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: "ldap"
    source: Mapped[str] = mapped_column(String(16))
    #: a group DN or a group name (its cn), stored lower-cased: DNs compare without case
    external_group: Mapped[str] = mapped_column(String(1024))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)


class CollectionGrant(Base):
    """Read or write access to one collection for exactly one user or one group."""

    __tablename__ = "collection_grants"
    __table_args__ = (
        CheckConstraint(
            "(user_id IS NOT NULL AND group_id IS NULL)"
            " OR (user_id IS NULL AND group_id IS NOT NULL)",
            name="ck_collection_grants_one_principal",
        ),
        # One row per principal and collection (NULLs are distinct, so each constraint
        # only bites for its own kind of principal).
        UniqueConstraint("collection_id", "user_id", name="uq_collection_grants_user"),
        UniqueConstraint("collection_id", "group_id", name="uq_collection_grants_group"),
        Index("ix_collection_grants_collection", "collection_id"),
        Index("ix_collection_grants_user", "user_id"),
        Index("ix_collection_grants_group", "group_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), default=None
    )
    #: "read" | "write" (write implies read)
    permission: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token for the API. Only the sha256 of the token is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: the first characters of the token, so a user can tell their tokens apart
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class UserSession(Base):
    """A signed-in browser session (migration 0006). The cookie carries a random session id;
    only its sha256 is stored, like an API token's. Signing out deletes the row; a password
    change or reset, disabling the account or a role change deletes all of the user's rows,
    so a cookie saved earlier no longer names a session."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        Index("ix_user_sessions_user", "user_id"),
        Index("ix_user_sessions_expires", "expires_at"),
    )

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: the server's own end of the session, whatever the cookie says
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (Index("ix_chats_user_updated", "user_id", "updated_at"),)

    #: uuid4 hex: not guessable, so a chat id in a URL reveals nothing about others
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    #: the collections the user picked for this chat; access is checked at question time
    collection_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_chat", "chat_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    #: "user" | "assistant"
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    #: sources, citations, mode, timings: whatever the answer page needs to redraw it
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: an answer's outcome, "answered" or "not_found" (qa.answering.decline); None for
    #: questions, answers cut off before their end, and answers stored before it existed
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)


class AnswerFeedback(Base):
    """A thumbs up or down, with an optional comment, on one answer (migration 0010).

    The question, answer, sources and model are copied in when the vote is cast: the
    feedback stays readable after the chat is deleted or the answer's documents change.
    One vote per user and answer; voting again replaces it.
    """

    __tablename__ = "answer_feedback"
    __table_args__ = (
        UniqueConstraint("user_id", "message_id", name="uq_answer_feedback_user_message"),
        Index("ix_answer_feedback_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: who voted; None once the account is deleted (the feedback itself stays)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    username: Mapped[str] = mapped_column(String(64))
    #: the answer voted on; None once its chat is deleted
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="SET NULL"), default=None
    )
    #: "up" | "down"
    rating: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str] = mapped_column(Text, default="")
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    #: the answer's sources as the chat stored them (n, document, title, pages)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    mode: Mapped[str | None] = mapped_column(String(16), default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Who did what, when. No foreign key to users: the log outlives the accounts."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_action", "action"),
        Index("ix_audit_events_user", "user_id"),
    )

    # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY auto-increments.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: copied at the time of the event, so the log still reads after a user is deleted
    username: Mapped[str | None] = mapped_column(String(64), default=None)
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(300), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)


class AppConfigEntry(Base):
    """One key of the settings admins change at run time (qa.accounts.app_config.AppConfig)."""

    __tablename__ = "app_config"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class SyncSource(Base):
    """A folder (a local one, or an NFS or SMB mount) kept in sync with a collection
    (migration 0014). A scan holds the source by renewing ``scan_heartbeat_at``; another
    may take it over only once that is older than the lease (a scan that died)."""

    __tablename__ = "sync_sources"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    interval_s: Mapped[int] = mapped_column(Integer)
    include: Mapped[list[str]] = mapped_column(JSON, default=list)
    exclude: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    scan_token: Mapped[str | None] = mapped_column(String(32), default=None)
    scan_heartbeat_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: "ok", "errors" (some files could not be read) or "failed" (the folder could not)
    last_status: Mapped[str | None] = mapped_column(String(16), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_counts: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)


class SyncedFile(Base):
    """What the last scan saw of one file of a synced folder, and the document it became."""

    __tablename__ = "synced_files"
    __table_args__ = (Index("ix_synced_files_sha", "source_id", "sha256"),)

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sync_sources.id", ondelete="CASCADE"), primary_key=True
    )
    #: the path below the folder, with "/" between parts
    rel_path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str | None] = mapped_column(
        ForeignKey("documents.id", ondelete="SET NULL"), default=None
    )
