"""A real OpenID provider for the OIDC sign-in tests: panva's certified ``oidc-provider``
(npm, pinned in tests/oidc_provider/package-lock.json, installed by ``make oidc-provider``)
run with the machine's Node.js by tests/oidc_provider/server.mjs.

``OidcServer`` writes the provider's configuration (two clients, an RSA signing key made
here, a cookie key) and its people file, starts node on a free port and waits until it
answers. ``set_person`` rewrites one person (the provider reads the file at every sign-in),
which is how a test moves someone between groups. ``browser_sign_in`` plays the user's
browser: it follows docqa's redirect to the provider, fills the provider's login form and
returns the URL the provider sends the browser back to.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.web.live import free_port, stop_process

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
NODE = shutil.which("node") or "/usr/bin/node"
CLIENT_ID = "docqa"
OTHER_CLIENT_ID = "other-app"


@dataclass
class OidcPerson:
    password: str
    name: str
    email: str
    groups: list[str] = field(default_factory=list)
    #: the preferred_username claim (default: the provider's account id)
    username: str | None = None


PEOPLE_AT_START = {
    "olivia": OidcPerson("Olivia-pass-1", "Olivia Ortiz", "olivia@example.org", ["finance"]),
    "oscar": OidcPerson("Oscar-pass-2", "Oscar Olsen", "oscar@example.org", []),
}


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def rsa_jwk(kid: str) -> dict[str, str]:
    """A new RSA private key as a JWK (the provider signs ID tokens with it, RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = key.private_numbers(), key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
        "n": _b64(public.n),
        "e": _b64(public.e),
        "d": _b64(private.d),
        "p": _b64(private.p),
        "q": _b64(private.q),
        "dp": _b64(private.dmp1),
        "dq": _b64(private.dmq1),
        "qi": _b64(private.iqmp),
    }


class OidcServer:
    def __init__(self, root: Path, redirect_uri: str, post_logout_uri: str) -> None:
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("oidc-provider is not installed: run `make oidc-provider`")
        self.root = root
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_secret = secrets.token_urlsafe(24)
        self.other_secret = secrets.token_urlsafe(24)
        self.redirect_uri = redirect_uri
        self.post_logout_uri = post_logout_uri
        self.signing_key = rsa_jwk("test-key-1")
        self.people = dict(PEOPLE_AT_START)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> OidcServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_people()
        clients = [
            {
                "client_id": CLIENT_ID,
                "client_secret": self.client_secret,
                "redirect_uris": [self.redirect_uri],
                "post_logout_redirect_uris": [self.post_logout_uri],
                "token_endpoint_auth_method": "client_secret_basic",
            },
            {
                "client_id": OTHER_CLIENT_ID,
                "client_secret": self.other_secret,
                "redirect_uris": [self.redirect_uri],
                "token_endpoint_auth_method": "client_secret_basic",
            },
        ]
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "clients": clients,
            "signing_key": self.signing_key,
            "cookie_key": secrets.token_urlsafe(24),
            "people_file": str(self.root / "people.json"),
        }
        (self.root / "config.json").write_text(json.dumps(config), encoding="utf-8")
        with (self.root / "provider.log").open("wb") as log:
            self._process = subprocess.Popen(
                [NODE, str(PROVIDER_DIR / "server.mjs"), str(self.root / "config.json")],
                cwd=PROVIDER_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the provider exited: {self.log()[-2000:]}")
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"the provider did not answer in 30 s: {self.log()[-2000:]}")

    def settings(self, **changes: object) -> dict[str, object]:
        """``Settings`` fields (``DOCQA_OIDC_*``) for docqa as this provider's client."""
        values: dict[str, object] = {
            "oidc_issuer": self.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": self.client_secret,
            "oidc_scopes": "openid profile email groups",
            "oidc_provider_name": "Example SSO",
            "oidc_timeout_s": 5.0,
        }
        values.update(changes)
        return values

    def forge(self, claims: dict[str, object], key: dict[str, str] | None = None) -> str:
        """An ID token signed with the provider's own key (or ``key``): for claims the
        provider would never issue (expired, another audience, no nonce)."""
        from joserfc import jwt
        from joserfc.jwk import RSAKey

        signing = key or self.signing_key
        header = {"alg": "RS256", "kid": signing["kid"]}
        return jwt.encode(header, claims, RSAKey.import_key(signing))

    def log(self) -> str:
        return (self.root / "provider.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None

    def set_person(self, account_id: str, person: OidcPerson | None) -> None:
        if person is None:
            self.people.pop(account_id, None)
        else:
            self.people[account_id] = person
        self._write_people()

    def _write_people(self) -> None:
        data = {
            account_id: {
                "password": p.password,
                "name": p.name,
                "email": p.email,
                "groups": p.groups,
                **({"username": p.username} if p.username else {}),
            }
            for account_id, p in self.people.items()
        }
        (self.root / "people.json").write_text(json.dumps(data), encoding="utf-8")

    # --- the user's browser -------------------------------------------------------------

    def browser_sign_in(
        self, browser: requests.Session, authorize_url: str, login: str, password: str
    ) -> str:
        """From docqa's redirect to the provider to the URL the provider sends the browser
        back to (docqa's callback with code and state, or with an error)."""
        url = authorize_url
        for _ in range(12):
            resp = browser.get(url, allow_redirects=False, timeout=10)
            if resp.status_code in (302, 303):
                url = urljoin(url, resp.headers["Location"])
                if not url.startswith(self.issuer):
                    return url  # back to the client
                continue
            if resp.status_code == 200 and 'name="login"' in resp.text:
                action = resp.text.split('action="', 1)[1].split('"', 1)[0]
                form = {"login": login, "password": password}
                resp = browser.post(
                    urljoin(url, action), data=form, allow_redirects=False, timeout=10
                )
                if resp.status_code not in (302, 303):
                    raise AssertionError(f"provider login answered {resp.status_code}: {resp.text}")
                url = urljoin(url, resp.headers["Location"])
                if not url.startswith(self.issuer):
                    return url
                continue
            raise AssertionError(f"unexpected provider answer {resp.status_code} at {url}")
        raise AssertionError("too many redirects at the provider")


def path_of(url: str) -> str:
    """``/path?query`` of an absolute URL (what a Flask test client requests)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
