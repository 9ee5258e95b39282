"""Web fixtures: a real app over a real data dir (SQLite or PostgreSQL, FAISS, blobs).

Every test using ``web`` (or ``seeded``) runs on SQLite; those whose behaviour depends on
the database (access checks, deletes, hostile ids, JSON and dates) are marked
``both_databases`` and run on PostgreSQL too. The seeded data is built once per session and
per backend, then copied for each test:

    collections  handbook  the four sample documents
                 finance   one document with a unique secret phrase
    users        admin (admin), editor (editor, write on handbook),
                 alice (reader: handbook + finance), bob (reader: handbook only)

On PostgreSQL the seed is a template database plus the data dir seeded with it (blobs and
FAISS indexes, keyed by collection id, belong to that database); each test gets a copy of
that data dir and a database made from the template, reset to the seed before each reuse
(see ``PostgresSeed``).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import textwrap
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ingest.factory import build_ingest_service
from ingest.runner import run_ingest
from qa.accounts.access import READ, WRITE, AccessService
from qa.accounts.users import AccountService, Principal
from qa.answering.assembly import build_answer_service
from qa.llm.generate import Generator
from qa.retrieval.embedder import Embedder
from qa.settings import Settings
from qa.store.db.engine import Database
from tests.conftest import SAMPLES
from web.app import create_app
from web.extensions import WebServices, build_web_services
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


def seed_data(root: Path, embedder: Embedder, db_url: str | None = None) -> None:
    """Ingest the collections and create the accounts; every engine is disposed after."""
    settings = make_settings(root, db_url)
    service = build_ingest_service(settings, embedder=embedder)
    try:
        run_ingest(service, [SAMPLES], "handbook")
        secret = root.parent / "finance-src"
        secret.mkdir()
        (secret / "falcon-budget.md").write_text(SECRET_DOC)
        run_ingest(service, [secret / "falcon-budget.md"], "finance")
    finally:
        service.close()
        service.db.dispose()  # a PostgreSQL template is copied only with no connection
    db = Database(settings.db_url)
    try:
        seed_accounts(db)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A data dir (SQLite) with the collections and users above, built once."""
    root = tmp_path_factory.mktemp("web-seed") / "var"
    seed_data(root, embedder)
    return root


class PostgresSeed:
    """A seeded template database, the data dir seeded with it, and clones to lend.

    Clones are made with ``CREATE DATABASE ... TEMPLATE`` but recycled between tests
    instead of being dropped: on PostgreSQL 15 every ``DROP DATABASE`` forces a checkpoint,
    which takes 0.5 s to 30 s while other work shares the disk, and each new clone writes
    its ~8 MB of catalogs again. A recycled clone is reset to the seed in one transaction
    (its leftover connections terminated, every table emptied and refilled from the
    ``docqa_seed`` snapshot schema made in the template, sequences set back), in the
    background while the next test runs. Clones are handed out oldest-returned first, so
    with two spares a returned clone sits out at least one other test before its reuse.
    """

    SPARES = 2
    SNAPSHOT = "docqa_seed"

    def __init__(self, data_dir: Path, admin_url: str) -> None:
        self.data_dir = data_dir
        self.admin_url = admin_url
        self.template = f"docqa_tpl_{uuid.uuid4().hex[:12]}"
        # AUTOCOMMIT: CREATE/DROP DATABASE cannot run inside a transaction.
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        # One thread makes and resets clones while tests run.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="pg-clones")
        self._ready: deque[Future[str]] = deque()
        self._clones: list[str] = []
        self._tables: list[str] = []  # parents before children
        self._sequences: dict[str, tuple[int, bool]] = {}  # the seed's (value, is_called)
        self._execute(f'CREATE DATABASE "{self.template}"')
        # Commits need not wait for the disk (the SQL is the same): a test database never
        # outlives a crash, and a WAL flush per commit costs 10-100 ms when other work
        # shares the disk.
        self._execute(f'ALTER DATABASE "{self.template}" SET synchronous_commit = off')

    def url(self, database: str) -> str:
        url = sa.make_url(self.admin_url).set(database=database)
        return url.render_as_string(hide_password=False)

    def snapshot(self) -> None:
        """Keep a copy of the seeded rows inside the template, for the resets."""
        engine = sa.create_engine(self.url(self.template), poolclass=sa.NullPool)
        try:
            meta = sa.MetaData()
            meta.reflect(engine)
            # The schema version never changes during the tests.
            self._tables = [t.name for t in meta.sorted_tables if t.name != "alembic_version"]
            with engine.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {self.SNAPSHOT}"))
                for table in self._tables:
                    conn.execute(
                        sa.text(f'CREATE TABLE {self.SNAPSHOT}."{table}" AS TABLE public."{table}"')
                    )
                rows = conn.execute(
                    sa.text(
                        "SELECT sequencename, coalesce(last_value, start_value),"
                        " last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'"
                    )
                )
                self._sequences = {name: (int(value), used) for name, value, used in rows}
        finally:
            # The template must have no open connection when it is copied.
            engine.dispose()
        for _ in range(self.SPARES):
            self._ready.append(self._worker.submit(self._create))

    def take(self) -> str:
        """The name of a database holding exactly the seed, for one test."""
        if self._ready:
            return self._ready.popleft().result()
        return self._create()  # a test holding several databases at once

    def give_back(self, name: str) -> None:
        self._ready.append(self._worker.submit(self._reset, name))

    def close(self) -> None:
        """Drop every clone, then the template (at the end of the session)."""
        self._worker.shutdown()  # lets the resets under way finish
        try:
            for name in [*self._clones, self.template]:
                # FORCE: a connection a test left behind must not keep the database alive.
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            self._admin.dispose()

    def _create(self) -> str:
        name = f"docqa_t_{uuid.uuid4().hex[:12]}"
        self._clones.append(name)
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        # Not copied from the template (see __init__).
        self._execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        return name

    def _reset(self, name: str) -> str:
        engine = sa.create_engine(self.url(name), poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                # A thread the test left running reconnects through the pool's pre-ping;
                # the web fixture waits for the ingest queue, this ends anything else.
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                # DELETE, not TRUNCATE: a few hundred rows, while TRUNCATE replaces the
                # files of every table and index, and its commit must wait for the disk.
                for table in reversed(self._tables):
                    conn.execute(sa.text(f'DELETE FROM public."{table}"'))
                for table in self._tables:
                    source = f'{self.SNAPSHOT}."{table}"'
                    conn.execute(sa.text(f'INSERT INTO public."{table}" SELECT * FROM {source}'))
                for sequence, (value, used) in self._sequences.items():
                    conn.execute(
                        sa.text("SELECT setval(:seq, :value, :used)"),
                        {"seq": f'public."{sequence}"', "value": value, "used": used},
                    )
        finally:
            engine.dispose()
        return name

    def _execute(self, sql: str) -> None:
        with self._admin.connect() as conn:
            conn.execute(sa.text(sql))


@pytest.fixture(scope="session")
def seeded_postgres(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, postgres_admin_url: str
) -> Iterator[PostgresSeed]:
    """The same seed in a PostgreSQL template database, built once, dropped at the end."""
    seed = PostgresSeed(tmp_path_factory.mktemp("web-seed-pg") / "var", postgres_admin_url)
    try:
        seed_data(seed.data_dir, embedder, seed.url(seed.template))
        seed.snapshot()
        yield seed
    finally:
        seed.close()


class Seeded:
    """Fresh copies of the seeded data for one test, on ``backend`` "sqlite" or "postgres".

    A test that needs its own settings builds its env the way ``web`` does:
    ``data, db_url = seeded.copy(); build_env(data, embedder, db_url=db_url, ...)``.
    """

    def __init__(self, backend: str, root: Path, template: Path, pg: PostgresSeed | None):
        self.backend = backend
        self._root = root
        self._template = template
        self._pg = pg
        self._copies = 0
        self._databases: list[str] = []

    def copy(self) -> tuple[Path, str | None]:
        """A new data dir and its database URL (None: the SQLite file inside the dir)."""
        data = self._root / (f"var{self._copies}" if self._copies else "var")
        self._copies += 1
        shutil.copytree(self._template, data)
        if self._pg is None:
            return data, None
        name = self._pg.take()
        self._databases.append(name)
        return data, self._pg.url(name)

    def release(self) -> None:
        if self._pg is not None:
            for name in self._databases:
                self._pg.give_back(name)
        self._databases.clear()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``seeded`` is SQLite; tests marked ``both_databases`` run a second time on PostgreSQL.

    Most web behaviour does not depend on the database (the DB layer has its own tests on
    both); running every web test twice doubled the suite's longest part for no signal.
    """
    if "seeded" not in metafunc.fixturenames:
        return
    backends: list[Any] = ["sqlite"]
    if metafunc.definition.get_closest_marker("both_databases"):
        backends.append(pytest.param("postgres", marks=pytest.mark.postgres))
    metafunc.parametrize("seeded", backends, indirect=True)


@pytest.fixture
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Seeded]:
    """A copy of the seeded data on SQLite or, for ``both_databases`` tests, PostgreSQL."""
    if request.param == "sqlite":
        seeded = Seeded("sqlite", tmp_path, request.getfixturevalue("seeded_template"), None)
    else:
        pg: PostgresSeed = request.getfixturevalue("seeded_postgres")
        seeded = Seeded("postgres", tmp_path, pg.data_dir, pg)
    try:
        yield seeded
    finally:
        seeded.release()


def seed_accounts(db: Database) -> None:
    accounts, access = AccountService(db), AccessService(db)
    ids = {
        name: accounts.create_user(name, PASSWORDS[name], ROLES[name]).user_id for name in PASSWORDS
    }
    from qa.store.catalog import get_collection

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
    from qa.store.catalog import list_collections

    with svc.db.session() as session:
        env.collections = {c.name: c.id for c, _, _ in list_collections(session)}
    return env


@contextlib.contextmanager
def running_env(data_dir: Path, embedder: Embedder, **kwargs: Any) -> Iterator[WebEnv]:
    """``build_env(data_dir, embedder, **kwargs)`` for a ``with`` block (or a fixture of
    any scope); at its end the ingest queue drains and the services close."""
    env = build_env(data_dir, embedder, **kwargs)
    try:
        yield env
    finally:
        # Nothing may still be writing when a PostgreSQL database goes back to the pool.
        env.queue.wait_idle(60)
        env.svc.close()


@pytest.fixture
def web(seeded: Seeded, embedder: Embedder) -> Iterator[WebEnv]:
    """The seeded service, extractive answers (no model), on a fresh copy of the data
    (SQLite, and PostgreSQL too for tests marked ``both_databases``)."""
    data, db_url = seeded.copy()
    with running_env(data, embedder, db_url=db_url) as env:
        yield env
