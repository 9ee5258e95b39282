"""Request guards and response headers that every page and endpoint gets.

- Body: what a request may send is decided from its headers (``web.bodies``); an error
  answer to a request with a body closes the connection, as its body may be unread.
- CSRF: a per-session token, required on every state-changing request that relies on the
  session cookie (hidden form field ``csrf_token`` or header ``X-CSRF-Token``). Requests
  authenticated by an API token carry no ambient credential and need none.
- Rate limit: every request counts against its user's (or address's) bucket.
- CSP ``default-src 'self'``: no inline script, no remote images, scripts, styles or fonts.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence

from flask import Response, g, request, session

from qa.errors import PermissionDenied
from qa.messages import N_
from web.bodies import declared_body
from web.errors import API_PREFIXES
from web.extensions import services
from web.requests import client_ip

CSRF_SESSION_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def content_security_policy(form_action_origins: Sequence[str] = ()) -> str:
    """The CSP header. ``form-action`` also names the OpenID provider when single sign-on is
    configured: signing out is a form post that the provider's logout endpoint ends, and
    browsers apply form-action to every redirect after a form post."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "font-src 'self'",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            " ".join(["form-action", "'self'", *form_action_origins]),
        ]
    )


CSP = content_security_policy()


def csrf_token() -> str:
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def check_csrf() -> None:
    if request.method not in UNSAFE_METHODS or g.get("auth_kind") == "token":
        return
    if g.get("principal") is None and request.path.startswith(API_PREFIXES):
        return  # the route answers 401; there is no session to ride on
    expected = session.get(CSRF_SESSION_KEY)
    sent = request.headers.get(CSRF_HEADER) or (
        request.form.get(CSRF_FIELD) if request.mimetype in _FORM_TYPES else None
    )
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise PermissionDenied(N_("missing or wrong CSRF token; reload the page and try again"))


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def check_rate() -> None:
    if request.path in ("/healthz", "/readyz", "/metrics") or request.path.startswith("/static/"):
        return
    p = g.get("principal")
    key = f"user:{p.user_id}" if p is not None else f"ip:{client_ip()}"
    svc = services()
    svc.limiter.hit("request", key, svc.settings.rate_requests_per_min)


def set_headers(resp: Response) -> Response:
    origin = services().sign_in.oidc_origin
    policy = CSP if origin is None else content_security_policy([origin])
    resp.headers.setdefault("Content-Security-Policy", policy)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if resp.status_code >= 400 and declared_body():
        # We may not have read the body: the client must not send another request after it.
        resp.headers["Connection"] = "close"
    if request.path.startswith(API_PREFIXES) or resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp
