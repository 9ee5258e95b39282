"""Single sign-on through the real pages, against a real OpenID provider: the "Sign in
with" button, the callback, a group claim mapped by an admin granting a collection, a
replayed callback, logout at the provider, and a provider that cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from qa.accounts.access import READ
from qa.retrieval.embedder import Embedder
from tests.conftest import OIDC_REDIRECT_URI
from tests.oidc_server import OidcServer, path_of
from tests.web.conftest import Client, Seeded, WebEnv, csrf_from, running_env


@pytest.fixture
def sso_web(seeded: Seeded, embedder: Embedder, oidc: OidcServer) -> Iterator[WebEnv]:
    data, db_url = seeded.copy()
    with running_env(data, embedder, db_url=db_url, **oidc.settings()) as env:
        yield env


def sso_sign_in(env: WebEnv, oidc: OidcServer, login: str, password: str) -> tuple[Client, str]:
    """Click "Sign in with", sign in at the provider, come back: the client and the
    callback path it came back to."""
    http = env.app.test_client()
    page = http.get("/login?next=/admin/tokens").get_data(as_text=True)
    assert 'id="sign-in-oidc"' in page
    assert 'Sign in with <span translate="no">Example SSO</span>' in page
    start = http.get("/login/oidc?next=/admin/tokens")
    assert start.status_code == 302
    back = oidc.browser_sign_in(requests.Session(), start.headers["Location"], login, password)
    assert back.startswith(OIDC_REDIRECT_URI)
    done = http.get(path_of(back))
    assert done.status_code == 302, done.get_data(as_text=True)[:400]
    assert done.headers["Location"].endswith("/admin/tokens")
    csrf = csrf_from(http.get("/login").get_data(as_text=True))
    return Client(http, csrf), path_of(back)


def test_single_sign_on_with_a_mapped_group_claim(sso_web: WebEnv, oidc: OidcServer) -> None:
    env = sso_web
    team = env.svc.accounts.create_group("Finance team")
    env.svc.access.grant(env.collections["finance"], READ, group_id=team.id)
    admin = env.client("admin")
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert 'id="directory-groups-oidc"' in page
    assert 'Groups from <span translate="no">Example SSO</span> (single sign-on)' in page
    resp = admin.post(
        "/admin/groups/directory",
        data={"source": "oidc", "directory_group": "finance", "group_id": team.id},
    )
    assert resp.status_code == 302

    client, callback = sso_sign_in(env, oidc, "olivia", "Olivia-pass-1")
    me = client.get("/api/v1/me").get_json()
    assert me["user"]["username"] == "olivia"
    names = {c["name"] for c in client.get("/api/v1/collections").get_json()["collections"]}
    assert names == {"finance"}

    # The provider's answer, replayed in the same browser: nothing is pending any more.
    replay = client.http.get(callback)
    assert replay.status_code == 401
    assert "another browser" in replay.get_data(as_text=True)

    # Signing out ends docqa's session, then the provider's.
    out = client.post("/logout")
    assert out.status_code == 302
    target = out.headers["Location"]
    assert target.startswith(f"{oidc.issuer}/session/end?")
    query = parse_qs(urlsplit(target).query)
    assert query["post_logout_redirect_uri"] == ["http://localhost/login"]
    assert query["id_token_hint"][0].count(".") == 2
    assert client.get("/api/v1/me").status_code == 401


def test_a_provider_that_cannot_be_reached_gets_a_clear_503(
    seeded: Seeded, embedder: Embedder, oidc: OidcServer
) -> None:
    data, db_url = seeded.copy()
    dead = oidc.settings(oidc_issuer="http://127.0.0.1:9", oidc_timeout_s=1.0)
    with running_env(data, embedder, db_url=db_url, **dead) as env:
        http = env.app.test_client()
        resp = http.get("/login/oidc")
        assert resp.status_code == 503
        assert "can&#39;t be reached" in resp.get_data(as_text=True)
        # a callback nobody started
        resp = http.get("/login/oidc/callback?code=abc&state=def")
        assert resp.status_code == 401


def test_without_single_sign_on_there_is_no_button_and_no_route(web: WebEnv) -> None:
    http = web.app.test_client()
    assert 'id="sign-in-oidc"' not in http.get("/login").get_data(as_text=True)
    assert http.get("/login/oidc").status_code == 404
