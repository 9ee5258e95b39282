"""The app's core: operations endpoints, sign-in, sessions, CSRF, body caps, rate limits,
security headers, and error mapping. Real services over a copy of the seeded data dir."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from qa.retrieval.embedder import Embedder
from tests.web.conftest import PASSWORDS, WebEnv, build_env, csrf_from


def test_healthz_and_readyz(web: WebEnv) -> None:
    c = web.anonymous()
    assert c.get("/healthz").json == {"status": "ok"}
    resp = c.get("/readyz")
    assert resp.status_code == 200
    checks = resp.json["checks"]
    assert checks["database"]["ok"] is True
    assert checks["indexes"]["published"] == 2
    assert checks["model"]["mode"] == "extractive"
    assert checks["ingest"]["running"] is True
    # issue 12: what a crash left behind (nothing here: every document is published)
    assert checks["ingest"]["stuck_processing"] == 0
    assert (checks["indexes"]["unpublished_chunks"], checks["indexes"]["behind"]) == (0, [])


def test_metrics_expose_requests_and_documents(web: WebEnv) -> None:
    c = web.anonymous()
    c.get("/healthz")
    text = c.get("/metrics").get_data(as_text=True)
    assert 'docqa_http_requests_total{endpoint="ops.healthz",method="GET",status="200"}' in text
    assert 'docqa_documents{status="indexed"} 5.0' in text
    assert "docqa_model_queue_depth 0.0" in text
    assert "docqa_documents_stuck_processing 0.0" in text
    assert "docqa_unpublished_chunks 0.0" in text


def test_metrics_count_draft_tokens_by_verdict() -> None:
    from qa.answering.events import Done
    from web.metrics import Metrics

    m = Metrics()
    m.observe_event(Done("generative", "stop", 3.0, draft_tokens=10, accepted_draft_tokens=7))
    m.observe_event(Done("generative", "stop", 3.0, draft_tokens=4, accepted_draft_tokens=0))
    m.observe_event(Done("extractive", "stop", 3.0))  # nothing drafted: nothing counted
    text = m.exposition().decode()
    assert 'docqa_draft_tokens_total{verdict="accepted"} 7.0' in text
    assert 'docqa_draft_tokens_total{verdict="rejected"} 7.0' in text


def test_pages_need_sign_in(web: WebEnv) -> None:
    c = web.anonymous()
    resp = c.get("/")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login")


def test_sign_in_and_out(web: WebEnv) -> None:
    c = web.client("alice")
    assert c.get("/").status_code == 200
    events = web.svc.audit.list(action="sign_in")
    assert [e.username for e in events] == ["alice"]
    resp = c.post("/logout")
    assert resp.status_code == 302
    assert c.get("/").status_code == 302
    assert web.svc.audit.list(action="sign_out")[0].username == "alice"


def test_wrong_password_is_401_and_audited(web: WebEnv) -> None:
    c = web.anonymous()
    resp = c.post("/login", data={"username": "alice", "password": "nope", "csrf_token": c.csrf})
    assert resp.status_code == 401
    assert "Wrong username or password." in resp.get_data(as_text=True)
    assert web.svc.audit.list(action="sign_in_failed")[0].username == "alice"


def test_login_form_needs_csrf(web: WebEnv) -> None:
    http = web.app.test_client()
    resp = http.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert resp.status_code == 403
    assert "CSRF" in resp.get_data(as_text=True)


def test_open_redirect_refused(web: WebEnv) -> None:
    c = web.anonymous()
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        resp = c.http.post(
            "/login",
            data={
                "username": "bob",
                "password": PASSWORDS["bob"],
                "csrf_token": csrf_from(c.get("/login").get_data(as_text=True)),
                "next": target,
            },
        )
        assert resp.status_code == 302
        assert resp.headers["Location"] == "/", target
        c.post(
            "/logout", headers={"X-CSRF-Token": csrf_from(c.get("/login").get_data(as_text=True))}
        )


def test_unsafe_request_without_csrf_is_403(web: WebEnv) -> None:
    c = web.client("alice")
    resp = c.http.post("/logout")  # no token
    assert resp.status_code == 403
    assert c.get("/").status_code == 200  # still signed in


@pytest.mark.both_databases
def test_deleted_user_session_stops_working(web: WebEnv) -> None:
    c = web.client("bob")
    assert c.get("/").status_code == 200
    web.svc.accounts.delete_user(web.users["bob"].user_id)
    assert c.get("/").status_code == 302


def test_session_cookie_flags(web: WebEnv) -> None:
    c = web.anonymous()
    resp = c.post(
        "/login",
        data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": c.csrf},
    )
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_security_headers(web: WebEnv) -> None:
    resp = web.anonymous().get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_api_errors_are_json(web: WebEnv) -> None:
    c = web.anonymous()
    resp = c.get("/api/v1/no-such-route")
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"
    resp = c.http.delete("/healthz")
    assert resp.status_code == 405
    assert resp.json["error"]["code"] == "method_not_allowed"


def test_bad_bearer_token_is_401(web: WebEnv) -> None:
    http = web.app.test_client()
    for header in ("Bearer dq_not-a-token", "Basic YWxpY2U6eA==", "Bearer "):
        resp = http.get("/healthz", headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert resp.json["error"]["code"] == "unauthenticated"


def test_plain_body_over_cap_is_413(web: WebEnv) -> None:
    c = web.client("alice")
    resp = c.post("/logout", data="x" * (3 * 1024 * 1024), content_type="text/plain")
    assert resp.status_code == 413


def test_rate_limit_429_with_retry_after(
    tmp_path: Path, seeded_template: Path, embedder: Embedder
) -> None:
    # SQLite only: the limiter keeps its buckets in memory, the database plays no part.
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(data, embedder, rate_requests_per_min=5, rate_sign_ins_per_min=100)
    try:
        c = env.client("bob")  # sign-in costs 3 requests
        statuses = [c.get("/healthz").status_code for _ in range(3)]  # health is not limited
        assert statuses == [200, 200, 200]
        # The user's own bucket (5 per minute) starts full at sign-in; the client's
        # reload of /login after signing in took one token.
        codes = [c.get("/").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]
        resp = c.get("/")
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
    finally:
        env.svc.close()


def test_sign_in_attempts_are_limited_per_address(
    tmp_path: Path, seeded_template: Path, embedder: Embedder
) -> None:
    # SQLite only: the limiter keeps its buckets in memory, the database plays no part.
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(data, embedder, rate_sign_ins_per_min=3)
    try:
        c = env.anonymous()
        codes = [
            c.post(
                "/login", data={"username": "alice", "password": "x", "csrf_token": c.csrf}
            ).status_code
            for _ in range(4)
        ]
        assert codes == [401, 401, 401, 429]
    finally:
        env.svc.close()


@pytest.fixture
def live_small_cap(
    tmp_path: Path, seeded_template: Path, embedder: Embedder
) -> Iterator[tuple[str, int]]:
    # SQLite only: the 413 comes from the headers alone, before any database access.
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(data, embedder, max_upload_mb=1)
    server = make_server("127.0.0.1", 0, env.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        env.svc.close()


def test_huge_upload_refused_before_the_body_is_sent(live_small_cap: tuple[str, int]) -> None:
    """The answer arrives while the client has sent only headers: nothing was spooled.
    A wrong token is a 401 before the size is looked at (tests/web/test_body_limits.py
    has the 413s, on gunicorn)."""
    host, port = live_small_cap
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/collections/1/documents HTTP/1.1\r\n"
            b"Host: x\r\nAuthorization: Bearer dq_whatever\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10737418240\r\n\r\n"
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        reply = b"".join(chunks).decode("latin-1")
    assert reply.startswith("HTTP/1.1 401"), reply[:200]
    assert '"unauthenticated"' in reply
    assert "Connection: close" in reply
