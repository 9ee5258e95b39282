"""Who someone is according to an OpenID provider (Keycloak, Entra ID, Authentik, ...).

The authorization code flow with PKCE (RFC 7636, S256), as a confidential client:

1. ``begin`` makes a fresh ``state``, ``nonce`` and PKCE verifier, which the browser's
   session keeps (``PendingSignIn``), and the URL of the provider's authorization endpoint.
2. The provider signs the person in and sends the browser back with a code and the state.
3. ``finish`` checks the state against the pending sign-in (the pending sign-in is used
   once: a replayed callback finds none), exchanges the code with the verifier and the
   client secret, and validates the ID token: its signature against the provider's JWKS
   (asymmetric algorithms only; the keys fetched again once when a token names an unknown
   key id), issuer, audience and authorized party, expiry and issue time, nonce and
   ``at_hash``. Claims missing from the ID token are read from userinfo, whose ``sub``
   must match. The claims become a ``DirectoryAccount``.

The provider's metadata comes from ``/.well-known/openid-configuration`` (its ``issuer``
must be the configured one) and is kept for an hour. Every request has a timeout; a
provider that cannot be reached is ``Unavailable``, a token or answer that does not check
out is ``Unauthenticated``, and the reason is logged, not shown.

Libraries: Authlib (the OAuth 2 session, PKCE and the OpenID ID token claim rules) on
joserfc (JWS and JWK), both maintained by the same author.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from qa.accounts.ldap_directory import DirectoryAccount
from qa.errors import ConfigError, Unauthenticated, Unavailable
from qa.messages import N_
from qa.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "oidc"
#: how long a started sign-in may take at the provider
PENDING_TTL_S = 600
METADATA_TTL_S = 3600
#: clock difference tolerated between docqa and the provider
LEEWAY_S = 60
#: signatures an ID token may carry: asymmetric only, so no shared secret and no "none"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
FAILED = N_("the sign-in with your organisation's account did not work; please try again")
UNREACHABLE = N_(
    "the sign-in service of your organisation can't be reached right now; try again in a few"
    " minutes, or sign in with a docqa password"
)
EXPIRED = N_("that sign-in was started too long ago or in another browser; please start it again")


@dataclass(frozen=True)
class OidcConfig:
    """The ``DOCQA_OIDC_*`` settings, checked (defaults and meanings: qa/settings.py)."""

    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    username_claim: str
    display_name_claim: str
    email_claim: str
    groups_claim: str
    provider_name: str
    ca_file: Path | None
    timeout_s: float
    redirect_uri: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The configured provider, or None when ``DOCQA_OIDC_ISSUER`` is unset."""
        issuer = (settings.oidc_issuer or "").strip().rstrip("/")
        if not issuer:
            return None
        if not issuer.startswith(("https://", "http://")):
            raise ConfigError(f"DOCQA_OIDC_ISSUER: {issuer!r} is not an http(s) URL")
        if not settings.oidc_client_id:
            raise ConfigError("DOCQA_OIDC_CLIENT_ID is required with DOCQA_OIDC_ISSUER")
        if "openid" not in settings.oidc_scopes.split():
            raise ConfigError("DOCQA_OIDC_SCOPES must include openid")
        if settings.oidc_ca_file is not None and not settings.oidc_ca_file.is_file():
            raise ConfigError(f"DOCQA_OIDC_CA_FILE: no file at {settings.oidc_ca_file}")
        return cls(
            issuer=issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret or None,
            scopes=settings.oidc_scopes,
            username_claim=settings.oidc_username_claim,
            display_name_claim=settings.oidc_display_name_claim,
            email_claim=settings.oidc_email_claim,
            groups_claim=settings.oidc_groups_claim,
            provider_name=settings.oidc_provider_name,
            ca_file=settings.oidc_ca_file,
            timeout_s=settings.oidc_timeout_s,
            redirect_uri=settings.oidc_redirect_uri or None,
        )


@dataclass(frozen=True)
class PendingSignIn:
    """What the browser's session holds between the redirect and the callback."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    started_at: float
    next_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> PendingSignIn | None:
        if not isinstance(data, dict):
            return None
        try:
            pending = cls(**data)
        except TypeError:
            return None
        fields = (pending.state, pending.nonce, pending.code_verifier, pending.redirect_uri)
        if not all(isinstance(f, str) and f for f in fields):
            return None
        if not isinstance(pending.started_at, int | float) or not isinstance(pending.next_url, str):
            return None
        return pending


@dataclass(frozen=True)
class SignedIn:
    account: DirectoryAccount
    #: kept in the browser's session for RP-initiated logout (``id_token_hint``)
    id_token: str


class OidcClient:
    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    # --- the flow -------------------------------------------------------------------

    def begin(self, redirect_uri: str, next_url: str = "") -> tuple[str, PendingSignIn]:
        """The provider's authorization URL and what the session must keep until the
        callback."""
        endpoint = self._endpoint("authorization_endpoint")
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            redirect_uri=self.config.redirect_uri or redirect_uri,
            started_at=time.time(),
            next_url=next_url,
        )
        with self._session(pending.redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(
                endpoint,
                state=pending.state,
                nonce=pending.nonce,
                code_verifier=pending.code_verifier,
            )
        return url, pending

    def finish(self, pending: PendingSignIn | None, args: Mapping[str, str]) -> SignedIn:
        """Check the provider's answer (the callback's query) and return who signed in."""
        state = args.get("state", "")
        if pending is None or not secrets.compare_digest(state, pending.state):
            raise Unauthenticated(EXPIRED)
        if time.time() - pending.started_at > PENDING_TTL_S:
            raise Unauthenticated(EXPIRED)
        if "error" in args:
            # The person cancelled, or the provider refused (access_denied, ...).
            log.warning(
                "OIDC: the provider answered %s: %s",
                args.get("error"),
                args.get("error_description"),
            )
            raise Unauthenticated(FAILED)
        code = args.get("code", "")
        if not code:
            raise Unauthenticated(FAILED)
        token = self._exchange(pending, code)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            log.warning("OIDC: the token response has no id_token")
            raise Unauthenticated(FAILED)
        claims = self.validate_id_token(id_token, pending.nonce, token.get("access_token"))
        claims = self._with_userinfo(claims, token.get("access_token"))
        return SignedIn(self._account(claims), id_token)

    def validate_id_token(
        self, id_token: str, nonce: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """The ID token's claims if it is this provider's, for this client and this
        sign-in, and still valid; Unauthenticated otherwise."""
        try:
            decoded = self._decode(id_token)
            options = {
                "iss": {"essential": True, "value": self.config.issuer},
                "aud": {"essential": True, "value": self.config.client_id},
                "sub": {"essential": True},
            }
            params = {"nonce": nonce, "client_id": self.config.client_id}
            if access_token:
                params["access_token"] = access_token
            claims = CodeIDToken(decoded.claims, decoded.header, options=options, params=params)
            claims.validate(leeway=LEEWAY_S)
        except (JoseError, ValueError) as exc:
            log.warning("OIDC: ID token refused: %s", exc)
            raise Unauthenticated(FAILED) from exc
        if "nonce" not in claims:
            raise Unauthenticated(FAILED)
        return dict(claims)

    def logout_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser so the provider's session ends too (RP-initiated
        logout), or None when the provider has no end_session_endpoint."""
        try:
            endpoint = self._metadata_value("end_session_endpoint")
        except Unavailable:
            return None
        if not isinstance(endpoint, str) or not endpoint:
            return None
        query = {
            "client_id": self.config.client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
        }
        if id_token:
            query["id_token_hint"] = id_token
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    # --- provider requests ----------------------------------------------------------

    def _session(self, redirect_uri: str) -> OAuth2Session:
        oauth = OAuth2Session(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            scope=self.config.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=(
                "client_secret_basic" if self.config.client_secret else "none"
            ),
        )
        oauth.verify = str(self.config.ca_file) if self.config.ca_file else True
        return oauth

    def _exchange(self, pending: PendingSignIn, code: str) -> dict[str, Any]:
        endpoint = self._endpoint("token_endpoint")
        try:
            with self._session(pending.redirect_uri) as oauth:
                token = oauth.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                    timeout=self.config.timeout_s,
                )
        except requests.RequestException as exc:
            log.error("OIDC: token endpoint %s: %s", endpoint, exc)
            raise Unavailable(UNREACHABLE) from exc
        except Exception as exc:  # Authlib's OAuth errors: invalid_grant (a used code), ...
            log.warning("OIDC: the code was refused: %s", exc)
            raise Unauthenticated(FAILED) from exc
        return dict(token)

    def _get_json(self, url: str, **kwargs: Any) -> dict[str, Any]:
        verify: str | bool = str(self.config.ca_file) if self.config.ca_file else True
        try:
            resp = requests.get(url, timeout=self.config.timeout_s, verify=verify, **kwargs)
            resp.raise_for_status()
            data = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.error("OIDC: %s: %s", url, exc)
            raise Unavailable(UNREACHABLE) from exc
        if not isinstance(data, dict):
            log.error("OIDC: %s did not answer a JSON object", url)
            raise Unavailable(UNREACHABLE)
        return data

    def _metadata_value(self, name: str) -> object:
        with self._lock:
            fresh = (
                self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_TTL_S
            )
            if not fresh:
                url = f"{self.config.issuer}/.well-known/openid-configuration"
                metadata = self._get_json(url)
                if metadata.get("issuer", "").rstrip("/") != self.config.issuer:
                    # Mix-up defence: the document must be the configured issuer's own.
                    log.error("OIDC: %s names the issuer %r", url, metadata.get("issuer"))
                    raise Unavailable(UNREACHABLE)
                self._metadata, self._metadata_at = metadata, time.monotonic()
            assert self._metadata is not None
            return self._metadata.get(name)

    def _endpoint(self, name: str) -> str:
        value = self._metadata_value(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            log.error("OIDC: the provider's metadata has no %s", name)
            raise Unavailable(UNREACHABLE)
        return value

    def _key_set(self, refresh: bool) -> KeySet:
        with self._lock:
            cached = self._keys
        if cached is not None and not refresh:
            return cached
        data = self._get_json(self._endpoint("jwks_uri"))
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError) as exc:
            log.error("OIDC: the provider's JWKS cannot be read: %s", exc)
            raise Unavailable(UNREACHABLE) from exc
        with self._lock:
            self._keys = keys
        return keys

    def _decode(self, id_token: str) -> jwt.Token:
        try:
            return jwt.decode(id_token, self._key_set(refresh=False), algorithms=ALGORITHMS)
        except JoseError:
            # A rotated key: fetch the set once more before refusing the token.
            return jwt.decode(id_token, self._key_set(refresh=True), algorithms=ALGORITHMS)

    def _with_userinfo(self, claims: dict[str, Any], access_token: object) -> dict[str, Any]:
        wanted = (self.config.username_claim, self.config.groups_claim, self.config.email_claim)
        if all(name in claims for name in wanted) or not isinstance(access_token, str):
            return claims
        endpoint = self._metadata_value("userinfo_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            return claims
        info = self._get_json(endpoint, headers={"Authorization": f"Bearer {access_token}"})
        if info.get("sub") != claims.get("sub"):
            log.warning("OIDC: userinfo answered for another subject")
            raise Unauthenticated(FAILED)
        return {**info, **claims}

    # --- claims -> account ----------------------------------------------------------

    def _account(self, claims: Mapping[str, Any]) -> DirectoryAccount:
        username = claims.get(self.config.username_claim)
        if not isinstance(username, str) or not username.strip():
            log.warning("OIDC: the ID token has no %r claim", self.config.username_claim)
            raise Unauthenticated(FAILED)
        groups = claims.get(self.config.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        keys = {
            str(g).strip().lower() for g in groups if isinstance(g, str | int) and str(g).strip()
        }
        return DirectoryAccount(
            username=username.strip(),
            dn=f"{self.config.issuer}#{claims['sub']}",
            display_name=_text(claims.get(self.config.display_name_claim)),
            email=_text(claims.get(self.config.email_claim)),
            groups=frozenset(keys),
        )


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
