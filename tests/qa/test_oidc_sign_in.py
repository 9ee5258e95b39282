"""Single sign-on against a real OpenID provider (panva's certified oidc-provider on
Node.js), on real SQLite and PostgreSQL: the code flow with PKCE from the authorization URL
to the account, group claims that change grants, and every token or answer that must be
refused (tampered, another audience, another key, expired, no nonce, a replayed state, a
username that belongs to someone else)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from qa.accounts.access import READ, AccessService
from qa.accounts.audit import AuditLog
from qa.accounts.oidc_client import OidcConfig, PendingSignIn
from qa.accounts.sign_in import SignIn
from qa.accounts.users import AccountService, Principal
from qa.errors import ConfigError, Unauthenticated, Unavailable
from qa.settings import Settings
from qa.store.catalog import ensure_collection
from qa.store.db.engine import Database
from qa.store.db.models import User
from tests.conftest import OIDC_REDIRECT_URI
from tests.oidc_server import OTHER_CLIENT_ID, OidcPerson, OidcServer, rsa_jwk
from tests.qa.conftest import PASSWORD

OLIVIA = ("olivia", "Olivia-pass-1")


def sign_in_for(db: Database, oidc: OidcServer, **changes: object) -> SignIn:
    settings = Settings(**oidc.settings(**changes))  # type: ignore[arg-type]
    return SignIn.from_settings(settings, AccountService(db), AuditLog(db))


@pytest.fixture
def sso(db: Database, oidc: OidcServer) -> SignIn:
    return sign_in_for(db, oidc)


def provider_answer(
    oidc: OidcServer, sign_in: SignIn, login: str, password: str
) -> tuple[PendingSignIn, dict[str, str]]:
    """Start a sign-in, sign in at the provider as a browser would, and return the pending
    sign-in with the query the provider sent the browser back with."""
    url, pending = sign_in.oidc_begin(OIDC_REDIRECT_URI, "/chat")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["state"] == [pending.state] and query["nonce"] == [pending.nonce]
    back = oidc.browser_sign_in(requests.Session(), url, login, password)
    assert back.startswith(OIDC_REDIRECT_URI), back
    return pending, {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}


def signed_in(
    oidc: OidcServer, sign_in: SignIn, login: str, password: str
) -> tuple[Principal, str]:
    pending, args = provider_answer(oidc, sign_in, login, password)
    return sign_in.oidc_finish(pending, args)


def claims(oidc: OidcServer, **changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": oidc.issuer,
        "sub": "olivia",
        "aud": "docqa",
        "iat": now,
        "exp": now + 300,
        "nonce": "the-nonce",
        "preferred_username": "olivia",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


# --- the flow ---------------------------------------------------------------------------


def test_sign_in_creates_an_sso_account_whose_groups_follow_the_claims(
    db: Database, oidc: OidcServer, sso: SignIn
) -> None:
    accounts, access = AccountService(db), AccessService(db)
    finance = accounts.create_group("Finance")
    sso.source_accounts("oidc").add_group_map("FINANCE", finance.id)
    with db.session() as s:
        collection = ensure_collection(s, "finance-docs")
        s.commit()
        collection_id = collection.id
    access.grant(collection_id, READ, group_id=finance.id)

    p, id_token = signed_in(oidc, sso, *OLIVIA)
    assert (p.username, p.display_name, p.role) == ("olivia", "Olivia Ortiz", "reader")
    assert id_token.count(".") == 2
    with db.session() as s:
        user = s.get(User, p.user_id)
        assert user is not None and user.auth_source == "oidc"
        assert user.external_id == f"{oidc.issuer}#olivia" and user.email == "olivia@example.org"
    assert collection_id in access.readable_collection_ids(p)

    # Out of the group at the provider: out of the docqa group at the next sign-in.
    oidc.set_person("olivia", OidcPerson("Olivia-pass-1", "Olivia Ortiz", "o@example.org", []))
    try:
        again, _ = signed_in(oidc, sso, *OLIVIA)
    finally:
        oidc.set_person(
            "olivia", OidcPerson("Olivia-pass-1", "Olivia Ortiz", "olivia@example.org", ["finance"])
        )
    assert again.user_id == p.user_id
    assert collection_id not in access.readable_collection_ids(again)
    # no password door into a single sign-on account
    with pytest.raises(Unauthenticated):
        sso.authenticate("olivia", "Olivia-pass-1")


def test_a_replayed_or_foreign_state_is_refused(oidc: OidcServer, sso: SignIn) -> None:
    pending, args = provider_answer(oidc, sso, *OLIVIA)
    with pytest.raises(Unauthenticated, match="started too long ago or in another browser"):
        sso.oidc_finish(None, args)  # no sign-in pending in this browser
    with pytest.raises(Unauthenticated, match="another browser"):
        sso.oidc_finish(PendingSignIn.from_dict(pending.to_dict() | {"state": "x" * 43}), args)
    sso.oidc_finish(pending, args)
    with pytest.raises(Unauthenticated):
        sso.oidc_finish(pending, args)  # the same answer again: the code is spent
    stale = PendingSignIn.from_dict(pending.to_dict() | {"started_at": time.time() - 3600})
    with pytest.raises(Unauthenticated, match="too long ago"):
        sso.oidc_finish(stale, args)
    cancelled = {"state": pending.state, "error": "access_denied"}
    with pytest.raises(Unauthenticated, match="did not work"):
        sso.oidc_finish(pending, cancelled)
    assert PendingSignIn.from_dict({"state": 1}) is None
    assert PendingSignIn.from_dict("junk") is None


def test_wrong_password_at_the_provider_never_comes_back(oidc: OidcServer, sso: SignIn) -> None:
    url, _ = sso.oidc_begin(OIDC_REDIRECT_URI, "")
    with pytest.raises(AssertionError, match="401"):
        oidc.browser_sign_in(requests.Session(), url, "olivia", "not her password")


# --- ID tokens that must be refused -----------------------------------------------------


def test_a_tampered_token_is_refused(oidc: OidcServer, sso: SignIn) -> None:
    assert sso.oidc is not None
    good = oidc.forge(claims(oidc))
    assert sso.oidc.validate_id_token(good, "the-nonce")["sub"] == "olivia"
    header, payload, signature = good.split(".")
    forged_payload = oidc.forge(claims(oidc, sub="oscar", preferred_username="oscar")).split(".")[1]
    for token in (
        f"{header}.{forged_payload}.{signature}",  # another payload under olivia's signature
        f"{header}.{payload}.{signature[:-4]}AAAA",  # a damaged signature
        oidc.forge(claims(oidc), key=rsa_jwk(oidc.signing_key["kid"])),  # someone else's key
        f"{_b64json({'alg': 'none'})}.{payload}.",  # no signature at all
        "not.a.token",
        "",
    ):
        with pytest.raises(Unauthenticated):
            sso.oidc.validate_id_token(token, "the-nonce")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": OTHER_CLIENT_ID},  # issued to another application
        {"aud": [OTHER_CLIENT_ID, "docqa"], "azp": OTHER_CLIENT_ID},  # another authorized party
        {"iss": "http://127.0.0.1:1"},  # another issuer
        {"exp": int(time.time()) - 3600},  # expired
        {"nonce": "another-sign-in"},  # another sign-in's token
        {"nonce": None},  # no nonce
        {"sub": None},
    ],
)
def test_tokens_for_someone_else_or_out_of_date_are_refused(
    oidc: OidcServer, sso: SignIn, changes: dict[str, object]
) -> None:
    assert sso.oidc is not None
    with pytest.raises(Unauthenticated):
        sso.oidc.validate_id_token(oidc.forge(claims(oidc, **changes)), "the-nonce")


def test_a_real_token_of_another_client_is_refused(db: Database, oidc: OidcServer) -> None:
    other = sign_in_for(
        db, oidc, oidc_client_id=OTHER_CLIENT_ID, oidc_client_secret=oidc.other_secret
    )
    _, token = signed_in(oidc, other, *OLIVIA)  # a genuine ID token, for other-app
    docqa = sign_in_for(db, oidc)
    assert docqa.oidc is not None
    nonce = _claims_of(token)["nonce"]
    with pytest.raises(Unauthenticated):
        docqa.oidc.validate_id_token(token, nonce)


# --- accounts that must not be taken over ----------------------------------------------


def test_local_accounts_and_other_people_keep_their_names(
    db: Database, oidc: OidcServer, sso: SignIn
) -> None:
    AccountService(db).create_user("oscar", PASSWORD)
    with pytest.raises(Unauthenticated):
        signed_in(oidc, sso, "oscar", "Oscar-pass-2")  # a local account of that name
    signed_in(oidc, sso, *OLIVIA)
    # Another person at the provider whose username claim says "olivia" is not olivia.
    oidc.set_person(
        "impostor",
        OidcPerson(
            "Impostor-pass-9", "Not Olivia", "x@example.org", ["finance"], username="olivia"
        ),
    )
    try:
        with pytest.raises(Unauthenticated):
            signed_in(oidc, sso, "impostor", "Impostor-pass-9")
    finally:
        oidc.set_person("impostor", None)


def test_a_provider_that_cannot_be_reached_is_a_clear_503(db: Database, oidc: OidcServer) -> None:
    dead = sign_in_for(db, oidc, oidc_issuer="http://127.0.0.1:9", oidc_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="can't be reached"):
        dead.oidc_begin(OIDC_REDIRECT_URI, "")
    assert time.monotonic() - started < 5
    assert dead.oidc_logout_url("token", "http://localhost/login") is None


def test_settings_that_cannot_work_are_refused(
    db: Database, oidc: OidcServer, tmp_path: Any
) -> None:
    assert OidcConfig.from_settings(Settings()) is None
    for bad in (
        {"oidc_issuer": "ftp://example.org"},
        {"oidc_client_id": None},
        {"oidc_scopes": "profile email"},
        {"oidc_ca_file": tmp_path / "missing.pem"},
    ):
        with pytest.raises(ConfigError):
            OidcConfig.from_settings(Settings(**oidc.settings(**bad)))  # type: ignore[arg-type]


def test_logout_at_the_provider(oidc: OidcServer, sso: SignIn) -> None:
    _, id_token = signed_in(oidc, sso, *OLIVIA)
    url = sso.oidc_logout_url(id_token, "http://localhost/login")
    assert url is not None and url.startswith(f"{oidc.issuer}/session/end?")
    query = parse_qs(urlsplit(url).query)
    assert query["id_token_hint"] == [id_token]
    assert query["post_logout_redirect_uri"] == ["http://localhost/login"]


def _b64json(value: dict[str, object]) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    import base64
    import json

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
