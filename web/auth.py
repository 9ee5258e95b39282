"""Who is asking: a signed-in browser session or an API token, checked on every request.

The session cookie carries only the user id; the user row is read again for each request,
so deleting or disabling a user, or changing a role, takes effect on their next click.
API clients send ``Authorization: Bearer dq_...``; tokens are stored hashed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import g, redirect, request, session, url_for

from qa.accounts.users import Principal
from qa.errors import PermissionDenied, Unauthenticated
from web.errors import wants_json
from web.extensions import services

F = TypeVar("F", bound=Callable[..., Any])

SESSION_USER = "uid"


def load_principal() -> None:
    """``before_request``: set ``g.principal`` and ``g.auth_kind`` ("token"/"session")."""
    g.principal = None
    g.auth_kind = None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("use 'Authorization: Bearer <API token>'")
        g.principal = services().accounts.authenticate_token(credential.strip())
        g.auth_kind = "token"
        return
    uid = session.get(SESSION_USER)
    if isinstance(uid, int):
        try:
            g.principal = services().accounts.principal(uid)
            g.auth_kind = "session"
        except Unauthenticated:
            session.clear()  # the user was deleted or disabled


def current_principal() -> Principal:
    p = cast("Principal | None", g.get("principal"))
    if p is None:
        raise Unauthenticated("sign in first")
    return p


def sign_in(p: Principal) -> None:
    session.clear()  # a new session id for a new user: no fixation
    session[SESSION_USER] = p.user_id
    session.permanent = True


def sign_out() -> None:
    session.clear()


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("principal") is None:
            if wants_json():
                raise Unauthenticated("sign in or send an API token")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def roles_required(*roles: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @login_required
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_principal().role not in roles:
                raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


admin_required = roles_required("admin")
