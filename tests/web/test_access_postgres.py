"""Access control end to end on PostgreSQL: portal, REST API and OpenAI endpoint.

The other web tests run on both databases over a copied seed; these start from an empty
PostgreSQL database and ingest through the web app's own queue, as a deployment that
shares its metadata between machines would, then run the leak checks.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.accounts.access import READ
from qa.retrieval.embedder import Embedder
from qa.store.catalog import list_collections
from tests.conftest import SAMPLES
from tests.web.conftest import SECRET_DOC, SECRET_PHRASE, WebEnv, build_env, seed_accounts

pytestmark = pytest.mark.postgres

QUESTION = "What is the budget of Project Falcon?"


@pytest.fixture
def pg_web(tmp_path: Path, postgres_url: str, embedder: Embedder) -> Iterator[WebEnv]:
    env = build_env(tmp_path / "var", embedder, db_url=postgres_url)
    try:
        with (SAMPLES / "employee-handbook.md").open("rb") as f:
            env.queue.submit("handbook", f, "employee-handbook.md")
        env.queue.submit("finance", io.BytesIO(SECRET_DOC.encode()), "falcon-budget.md")
        env.wait_ingested()
        seed_accounts(env.svc.db)
        for user in env.svc.accounts.list_users():
            env.users[user.username] = env.svc.accounts.principal(user.id)
        with env.svc.db.session() as session:
            env.collections = {c.name: c.id for c, _, _ in list_collections(session)}
        yield env
    finally:
        env.svc.close()


def _portal(env: WebEnv, user: str) -> str:
    c = env.client(user)
    resp = c.post("/api/v1/ask", json={"question": QUESTION, "stream": False})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_data(as_text=True)


def _rest(env: WebEnv, token: str) -> str:
    resp = env.app.test_client().post(
        "/api/v1/ask",
        json={"question": QUESTION},
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
    )
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _openai(env: WebEnv, token: str, model: str = "docqa") -> tuple[int, str]:
    resp = env.app.test_client().post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": QUESTION}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    return resp.status_code, json.dumps(resp.get_json())


def test_reader_sees_only_granted_collections_on_postgres(pg_web: WebEnv) -> None:
    assert SECRET_PHRASE in _portal(pg_web, "alice")
    bob = pg_web.token("bob")
    assert SECRET_PHRASE not in _portal(pg_web, "bob")
    assert SECRET_PHRASE not in _rest(pg_web, bob)
    status, body = _openai(pg_web, bob)
    assert status == 200
    assert SECRET_PHRASE not in body
    assert _openai(pg_web, bob, "docqa/finance")[0] == 404


def test_revoked_and_deleted_on_postgres(pg_web: WebEnv) -> None:
    finance = pg_web.collections["finance"]
    bob = pg_web.users["bob"]
    token = pg_web.token("bob")
    pg_web.svc.access.grant(finance, READ, user_id=bob.user_id)
    assert SECRET_PHRASE in _rest(pg_web, token)
    pg_web.svc.access.revoke(finance, user_id=bob.user_id)
    assert SECRET_PHRASE not in _rest(pg_web, token)
    assert SECRET_PHRASE not in _openai(pg_web, token)[1]

    alice = pg_web.token("alice")
    assert SECRET_PHRASE in _rest(pg_web, alice)
    admin = pg_web.token("admin")
    docs = pg_web.app.test_client().get(
        f"/api/v1/collections/{finance}/documents", headers={"Authorization": f"Bearer {admin}"}
    )
    doc_id = docs.get_json()["documents"][0]["id"]
    deleted = pg_web.app.test_client().delete(
        f"/api/v1/documents/{doc_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert deleted.status_code == 200
    assert SECRET_PHRASE not in _rest(pg_web, alice)
    assert SECRET_PHRASE not in _openai(pg_web, alice)[1]
