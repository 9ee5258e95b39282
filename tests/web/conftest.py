"""Web fixtures: a real app over a real data dir (SQLite or PostgreSQL, FAISS, blobs).

The seeded data dir is built once per session and copied for each test:

    collections  handbook  the four sample documents
                 finance   one document with a unique secret phrase
    users        admin (admin), editor (editor, write on handbook),
                 alice (reader: handbook + finance), bob (reader: handbook only)
"""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.access import READ, WRITE, AccessService
from qa.accounts import AccountService, Principal
from qa.db.engine import Database
from qa.embedder import Embedder
from qa.llm.generate import Generator
from qa.services import build_answer_service
from qa.settings import Settings
from tests.conftest import SAMPLES
from web.app import create_app
from web.services import WebServices, build_web_services
from worker.embedded import EmbeddedIngestQueue

PASSWORDS = {
    "admin": "admin-password-1",
    "editor": "editor-password-1",
    "alice": "alice-password-1",
    "bob": "bob-password-1",
}
ROLES = {"admin": "admin", "editor": "editor", "alice": "reader", "bob": "reader"}
SECRET_PHRASE = "Project Falcon"
SECRET_DOC = textwrap.dedent(
    f"""\
    # Finance: confidential

    {SECRET_PHRASE} has a budget of 4.2 million EUR for the zebra-quartz migration.
    Only the finance team may read this document.
    """
)


def make_settings(data_dir: Path, db_url: str | None = None, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": db_url,
        "rate_requests_per_min": 100_000,
        "rate_questions_per_min": 100_000,
        "rate_sign_ins_per_min": 100_000,
        "secret_key": "test-secret-key-" + "x" * 32,
    }
    defaults.update(overrides)
    return Settings(**defaults)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A data dir (SQLite) with the collections and users above, built once."""
    root = tmp_path_factory.mktemp("web-seed") / "var"
    settings = make_settings(root)
    service = build_ingest_service(settings, embedder=embedder)
    try:
        run_ingest(service, [SAMPLES], "handbook")
        secret = root.parent / "finance-src"
        secret.mkdir()
        (secret / "falcon-budget.md").write_text(SECRET_DOC)
        run_ingest(service, [secret / "falcon-budget.md"], "finance")
    finally:
        service.close()
    db = Database(settings.db_url)
    try:
        seed_accounts(db)
    finally:
        db.dispose()
    return root


def seed_accounts(db: Database) -> None:
    accounts, access = AccountService(db), AccessService(db)
    ids = {
        name: accounts.create_user(name, PASSWORDS[name], ROLES[name]).user_id for name in PASSWORDS
    }
    from qa.catalog import get_collection

    with db.session() as session:
        handbook = get_collection(session, "handbook").id
        finance = get_collection(session, "finance").id
    access.grant(handbook, WRITE, user_id=ids["editor"])
    access.grant(handbook, READ, user_id=ids["alice"])
    access.grant(finance, READ, user_id=ids["alice"])
    access.grant(handbook, READ, user_id=ids["bob"])


class Client:
    """A test client signed in as one user, sending the CSRF token like the pages do."""

    def __init__(self, flask_client: FlaskClient, csrf: str | None) -> None:
        self.http = flask_client
        self.csrf = csrf

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"X-CSRF-Token": self.csrf} if self.csrf else {}
        headers.update(extra or {})
        return headers

    def get(self, url: str, **kw: Any) -> Any:
        return self.http.get(url, **kw)

    def post(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.http.post(url, headers=self._headers(headers), **kw)

    def put(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.http.put(url, headers=self._headers(headers), **kw)

    def patch(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.http.patch(url, headers=self._headers(headers), **kw)

    def delete(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.http.delete(url, headers=self._headers(headers), **kw)


_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_from(html: str) -> str:
    match = _CSRF_META.search(html)
    assert match, "page has no csrf meta tag"
    return match.group(1)


@dataclass
class WebEnv:
    app: Flask
    svc: WebServices
    queue: EmbeddedIngestQueue
    settings: Settings
    users: dict[str, Principal] = field(default_factory=dict)
    collections: dict[str, int] = field(default_factory=dict)

    def anonymous(self) -> Client:
        http = self.app.test_client()
        csrf = csrf_from(http.get("/login").get_data(as_text=True))
        return Client(http, csrf)

    def client(self, username: str) -> Client:
        """Signed in through the real login form."""
        http = self.app.test_client()
        csrf = csrf_from(http.get("/login").get_data(as_text=True))
        resp = http.post(
            "/login",
            data={"username": username, "password": PASSWORDS[username], "csrf_token": csrf},
        )
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        # Signing in starts a new session, with a new CSRF token.
        page = http.get("/login")
        return Client(http, csrf_from(page.get_data(as_text=True)))

    def token(self, username: str, name: str = "test") -> str:
        plaintext, _ = self.svc.accounts.create_token(self.users[username].user_id, name)
        return plaintext

    def wait_ingested(self, timeout: float = 120.0) -> None:
        assert self.queue.wait_idle(timeout), "ingest queue did not drain"


def build_env(
    data_dir: Path,
    embedder: Embedder,
    *,
    db_url: str | None = None,
    generator: Generator | None = None,
    **overrides: Any,
) -> WebEnv:
    settings = make_settings(data_dir, db_url, **overrides)
    ingest_service = build_ingest_service(settings, embedder=embedder)
    queue = EmbeddedIngestQueue(ingest_service)
    queue.start()
    answers = build_answer_service(
        settings,
        db=ingest_service.db,
        embedder=embedder,
        generator=generator,
        use_model=generator is not None,
    )
    svc = build_web_services(settings, ingest=queue, answers=answers)
    app = create_app(settings, services=svc)
    app.testing = True
    env = WebEnv(app, svc, queue, settings)
    for user in svc.accounts.list_users():
        env.users[user.username] = svc.accounts.principal(user.id)
    from qa.catalog import list_collections

    with svc.db.session() as session:
        env.collections = {c.name: c.id for c, _, _ in list_collections(session)}
    return env


@pytest.fixture
def web(tmp_path: Path, seeded_template: Path, embedder: Embedder) -> Iterator[WebEnv]:
    """The seeded service, extractive answers (no model), on a fresh copy of the data."""
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(data, embedder)
    try:
        yield env
    finally:
        env.svc.close()
