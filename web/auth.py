"""Who is asking: a signed-in browser session or an API token, checked on every request.

The session cookie carries a random session id that names a row on the server
(``qa.accounts.sessions``); the row and its user are read again for each request. Signing
out deletes the row, and a password, role or enabled-state change deletes all of the
user's rows, so a copy of the cookie stops working at once, not at its expiry. API
clients send ``Authorization: Bearer dq_...``; tokens are stored hashed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import g, redirect, request, session, url_for

from qa.accounts.users import Principal
from qa.errors import PermissionDenied, Unauthenticated
from qa.messages import N_
from web.errors import wants_json
from web.extensions import services

F = TypeVar("F", bound=Callable[..., Any])

#: the cookie's session id (cookies of earlier versions carried a "uid" and are ignored)
SESSION_ID = "sid"
#: a single sign-on under way: state, nonce and PKCE verifier (``PendingSignIn``)
OIDC_PENDING = "oidc"
#: the ID token of a single sign-on, for the provider's logout (``id_token_hint``)
OIDC_ID_TOKEN = "oidc_id_token"


def load_principal() -> None:
    """``before_request``: set ``g.principal`` and ``g.auth_kind`` ("token"/"session")."""
    g.principal = None
    g.auth_kind = None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated(N_("use 'Authorization: Bearer <API token>'"))
        g.principal = services().accounts.authenticate_token(credential.strip())
        g.auth_kind = "token"
        return
    session_id = session.get(SESSION_ID)
    if isinstance(session_id, str):
        try:
            g.principal = services().sessions.principal(session_id)
            g.auth_kind = "session"
        except Unauthenticated:
            session.clear()  # signed out elsewhere, ended by an account change, or expired


def current_principal() -> Principal:
    p = cast("Principal | None", g.get("principal"))
    if p is None:
        raise Unauthenticated(N_("sign in first"))
    return p


def current_preferences() -> dict[str, Any]:
    """The signed-in user's preferences, read once per request: the page's theme, its
    language (web.i18n) and the settings panel all read them."""
    if "preferences" not in g:
        g.preferences = services().accounts.preferences(current_principal().user_id)
    prefs: dict[str, Any] = g.preferences
    return prefs


def sign_in(p: Principal) -> None:
    session_id = services().sessions.start(p.user_id)
    session.clear()  # a new session for a new user: no fixation
    session[SESSION_ID] = session_id
    session.permanent = True


def sign_out() -> None:
    """End this browser's session on the server, then forget the cookie."""
    session_id = session.get(SESSION_ID)
    if isinstance(session_id, str):
        services().sessions.end(session_id)
    session.clear()


def sign_out_everywhere(p: Principal) -> int:
    """End every session of ``p`` (this one included); how many ended."""
    ended = services().sessions.end_all(p.user_id)
    session.clear()
    return ended


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("principal") is None:
            if wants_json():
                raise Unauthenticated(N_("sign in or send an API token"))
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def roles_required(*roles: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @login_required
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_principal().role not in roles:
                raise PermissionDenied(
                    N_("this needs the role %(roles)s", roles=" or ".join(roles))
                )
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


admin_required = roles_required("admin")
