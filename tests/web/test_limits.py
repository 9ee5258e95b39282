"""Limits that hold across processes (issue 12, deliverable 7): the per-username sign-in
lockout with backoff, which says the same for accounts that exist and names that do not;
a limit store that does not answer is replaced by the process's memory until it answers
again; and two real web processes sharing one Redis count sign-ins, lockouts and requests
together."""

from __future__ import annotations

import http.client
import re
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from limits.storage import RedisStorage

from qa.errors import RateLimited
from qa.retrieval.embedder import Embedder
from tests.web.conftest import PASSWORDS, WebEnv, build_env
from tests.web.live import LiveServer
from tests.worker.celery_support import RedisServer
from web import ratelimit
from web.ratelimit import LimitStore, RateLimiter

#: a Redis database no other test uses: flushed at the start of the shared-limit test
SHARED_REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture
def lockout_env(tmp_path: Path, seeded_template: Path, embedder: Embedder) -> Iterator[WebEnv]:
    # SQLite only: the counters live in the limit store, the database plays no part.
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(
        data,
        embedder,
        sign_in_lockout_after=3,
        sign_in_lockout_base_s=1,
        sign_in_lockout_max_s=2,
    )
    try:
        yield env
    finally:
        env.svc.close()


def _attempt(env: WebEnv, username: str, password: str) -> tuple[int, str, str | None]:
    c = env.anonymous()
    form = {"username": username, "password": password, "csrf_token": c.csrf}
    resp = c.post("/login", data=form)
    text = resp.get_data(as_text=True)
    match = re.search(r'id="login-error">([^<]*)<', text)
    return resp.status_code, match.group(1) if match else "", resp.headers.get("Retry-After")


def test_lockout_backs_off_and_does_not_reveal_accounts(lockout_env: WebEnv) -> None:
    env = lockout_env
    answers: dict[str, list[tuple[int, str]]] = {}
    for name in ("alice", "no-such-user"):
        runs = [_attempt(env, name, "wrong password") for _ in range(3)]
        assert [status for status, _, _ in runs] == [401, 401, 401]
        # Locked now: even the right password is not checked.
        status, error, retry = _attempt(env, name, PASSWORDS["alice"])
        assert (status, retry) == (429, "1")
        assert "Too many failed sign-ins for this username" in error
        answers[name] = [(s, e) for s, e, _ in runs] + [(status, error)]
    # An account that exists and a name that does not are answered alike.
    assert answers["alice"] == answers["no-such-user"]
    time.sleep(1.2)
    # One more failure after the lock: locked again, for twice as long (capped at max_s).
    assert _attempt(env, "alice", "wrong again")[0] == 401
    assert _attempt(env, "alice", PASSWORDS["alice"])[:3:2] == (429, "2")
    time.sleep(2.2)
    assert _attempt(env, "alice", PASSWORDS["alice"])[0] == 302
    # Success clears the count: two failures do not lock (three would).
    assert [_attempt(env, "alice", "x")[0] for _ in range(2)] == [401, 401]
    assert _attempt(env, "ALICE", PASSWORDS["alice"])[0] == 302  # names compare like sign-in
    failed = env.svc.audit.list(action="sign_in_failed", limit=100)
    assert sum(e.details.get("reason") == "locked" for e in failed) == 3
    assert [e.details["locked_s"] for e in reversed(failed) if "locked_s" in e.details] == [
        1,
        1,
        2,
    ]


def test_limit_store_down_counts_in_the_process(
    tmp_path: Path, seeded_template: Path, embedder: Embedder
) -> None:
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    # Port 1 refuses connections: the shared counts cannot be kept, so this process keeps
    # them (the limits still hold) and the app goes on answering.
    env = build_env(
        data, embedder, rate_limit_storage_url="redis://127.0.0.1:1/0", rate_requests_per_min=3
    )
    try:
        client = env.app.test_client()
        assert [client.get("/login").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert env.app.test_client().get("/healthz").status_code == 200  # not limited
    finally:
        env.svc.close()


def test_counts_go_back_to_the_shared_store_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "RECHECK_S", 0.0)
    with RedisServer(tmp_path / "redis") as server:
        limiter = RateLimiter(LimitStore(RedisStorage(server.url(), socket_timeout=1.0)))
        limiter.hit("request", "ip:a", 2)
        assert redis.Redis.from_url(server.url()).keys("*ip:a*")  # where every process counts
        server.stop()
        limiter.hit("request", "ip:b", 2)  # down: counted here, the request goes through
        limiter.hit("request", "ip:b", 2)
        with pytest.raises(RateLimited):
            limiter.hit("request", "ip:b", 2)
        server.start()
        limiter.hit("request", "ip:c", 2)
        assert redis.Redis.from_url(server.url()).keys("*ip:c*")  # shared again


# --- two web processes, one Redis ---------------------------------------------------------


class Browser:
    """A client from its own loopback address (Linux routes all of 127/8 to lo), so each
    check below has its own per-address counts. Cookies are kept across both servers,
    which sign them with the same key."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.cookies: dict[str, str] = {}
        self.page = ""  # the body of the last answer

    def request(self, server: LiveServer, path: str, form: dict[str, str] | None = None) -> int:
        conn = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=10, source_address=(self.address, 0)
        )
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = urllib.parse.urlencode(form) if form is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request("POST" if body is not None else "GET", path, body, headers)
            resp = conn.getresponse()
            self.page = resp.read().decode("utf-8", "replace")
            for header in resp.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return int(resp.status)
        finally:
            conn.close()

    def sign_in(self, server: LiveServer, username: str, password: str) -> int:
        assert self.request(server, "/login") == 200  # the form, and its CSRF token
        match = re.search(r'<meta name="csrf-token" content="([^"]+)">', self.page)
        assert match
        form = {"username": username, "password": password, "csrf_token": match.group(1)}
        return self.request(server, "/login", form)


@pytest.mark.slow
def test_two_web_processes_share_limits_and_lockouts(tmp_path: Path, seeded_template: Path) -> None:
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    redis.Redis.from_url(SHARED_REDIS).flushdb()
    env = {
        "DOCQA_RATE_LIMIT_STORAGE_URL": SHARED_REDIS,
        "DOCQA_RATE_REQUESTS_PER_MIN": "20",
        "DOCQA_RATE_SIGN_INS_PER_MIN": "4",
        "DOCQA_SIGN_IN_LOCKOUT_AFTER": "3",
        "DOCQA_SIGN_IN_LOCKOUT_BASE_S": "60",
    }
    with (
        LiveServer(data, name="limits-a", threads=4, env=env) as a,
        LiveServer(data, name="limits-b", threads=4, env=env) as b,
    ):
        # Requests of one address: 20 a minute across both processes, not 20 each.
        reader = Browser("127.0.0.2")
        codes = [reader.request(s, "/login") for _ in range(12) for s in (a, b)]
        assert codes == [200] * 20 + [429] * 4, codes
        # Sign-in attempts of one address: 4 a minute in all (each name failing once).
        guesser = Browser("127.0.0.3")
        tries = [guesser.sign_in(s, f"user{i}", "wrong") for i, s in enumerate((a, b, a, b, a))]
        assert tries == [401, 401, 401, 401, 429]
        # A username's failures count on both: three, spread over both, lock it on both,
        # for the right password too, from any address.
        spread = [
            Browser(f"127.0.0.{i}").sign_in(s, "alice", "wrong")
            for i, s in ((4, a), (5, b), (6, a))
        ]
        assert spread == [401, 401, 401]
        assert Browser("127.0.0.7").sign_in(b, "alice", PASSWORDS["alice"]) == 429
        assert Browser("127.0.0.8").sign_in(a, "bob", PASSWORDS["bob"]) == 302  # only alice
        keys = redis.Redis.from_url(SHARED_REDIS).keys("docqa-limits*")
        assert keys, "the counters are in the shared Redis"
