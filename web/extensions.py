"""The services one web app uses, built once and kept in ``app.extensions["docqa"]``."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from qa.accounts.access import AccessService
from qa.accounts.app_config import AppConfig
from qa.accounts.audit import AuditLog
from qa.accounts.directory_sync import DirectorySyncLoop
from qa.accounts.sessions import SessionService
from qa.accounts.sign_in import SignIn
from qa.accounts.users import AccountService
from qa.answering.answer_service import AnswerService
from qa.answering.assembly import build_answer_service
from qa.answering.chat_sources import ChatReader
from qa.answering.chats import ChatService
from qa.answering.feedback import FeedbackService
from qa.answering.question_service import QuestionService
from qa.library.ingest_queue import IngestQueue
from qa.library.service import LibraryService
from qa.library.sync_sources import SyncSources
from qa.retrieval.index_store import IndexStore
from qa.settings import Settings
from qa.store.blobstore import BlobStore
from qa.store.db.engine import Database
from web.metrics import Metrics
from web.ratelimit import LimitStore, RateLimiter, SignInLockout, build_limit_storage

log = logging.getLogger(__name__)

EXTENSION = "docqa"


@dataclass
class WebServices:
    settings: Settings
    db: Database
    answers: AnswerService
    accounts: AccountService
    #: local passwords, and the directory when one is configured
    sign_in: SignIn
    #: browser sessions the server can end (sign-out, account changes)
    sessions: SessionService
    access: AccessService
    chats: ChatService
    #: chat messages as the reader may see them now (revoked sources withheld)
    chat_reader: ChatReader
    #: thumbs up / down on answers, and the admins' view of them
    feedback: FeedbackService
    audit: AuditLog
    config: AppConfig
    library: LibraryService
    questions: QuestionService
    metrics: Metrics
    limiter: RateLimiter
    #: per-username backoff after failed sign-ins, counted where the limiter counts
    lockout: SignInLockout
    ingest: IngestQueue | None
    #: folders kept in sync with collections (scanned by the ingest side)
    sync_sources: SyncSources
    #: the single-machine service's periodic directory re-sync (scaled: Celery beat)
    directory_sync: DirectorySyncLoop | None = None

    def close(self) -> None:
        if self.directory_sync is not None:
            self.directory_sync.stop()
        if self.ingest is not None:
            self.ingest.close()
        self.db.dispose()


def build_web_services(
    settings: Settings,
    *,
    ingest: IngestQueue | None = None,
    answers: AnswerService | None = None,
    db: Database | None = None,
) -> WebServices:
    """Wire every service from one settings object (the CLI passes the ingest queue)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = db or (answers.db if answers is not None else Database(settings.db_url))
    answers = answers or build_answer_service(settings, db=db)
    accounts = AccountService(db)
    access = AccessService(db)
    chats = ChatService(db)
    audit = AuditLog(db)
    metrics = Metrics()
    library = LibraryService(
        db,
        access,
        audit,
        BlobStore(settings.blob_dir),
        IndexStore(settings.index_dir, keep=settings.index_keep_versions),
        ingest,
    )
    config = AppConfig(db)
    questions = QuestionService(
        answers, access, chats, audit, config=config, observer=metrics.observe_event
    )
    metrics.bind(answers=answers, db=db, ingest=ingest)
    limit_store = LimitStore(build_limit_storage(settings))
    return WebServices(
        settings=settings,
        db=db,
        answers=answers,
        accounts=accounts,
        sign_in=SignIn.from_settings(settings, accounts, audit),
        sessions=SessionService(db, lifetime=timedelta(hours=settings.session_hours)),
        access=access,
        chats=chats,
        chat_reader=ChatReader(chats, access, db),
        feedback=FeedbackService(db),
        sync_sources=SyncSources(db),
        audit=audit,
        config=config,
        library=library,
        questions=questions,
        metrics=metrics,
        limiter=RateLimiter(limit_store),
        lockout=SignInLockout(
            limit_store,
            after=settings.sign_in_lockout_after,
            base_s=settings.sign_in_lockout_base_s,
            max_s=settings.sign_in_lockout_max_s,
        ),
        ingest=ingest,
    )


def services() -> WebServices:
    """The services of the app handling the current request."""
    svc: WebServices = current_app.extensions[EXTENSION]
    return svc


def load_secret_key(settings: Settings) -> str:
    """The configured key, or one generated once and kept (0600) in the data dir.

    Kept on disk so sessions survive a restart, and so several web processes on one data
    dir sign cookies alike.
    """
    if settings.secret_key:
        return settings.secret_key
    path = settings.secret_key_file
    if path.is_file():
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # first writer wins when two processes start together
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return key
