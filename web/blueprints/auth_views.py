"""Sign-in and sign-out pages (form posts, CSRF-protected like every other form): sign-out
ends this session on the server, "sign out everywhere" every session of the user."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response as WzResponse

from qa.accounts.audit import SIGN_IN, SIGN_IN_FAILED, SIGN_OUT, SIGN_OUT_EVERYWHERE
from qa.accounts.oidc_client import PendingSignIn
from qa.errors import DocqaError, RateLimited, Unauthenticated, Unavailable
from web.auth import (
    OIDC_ID_TOKEN,
    OIDC_PENDING,
    current_principal,
    login_required,
    sign_in,
    sign_out,
    sign_out_everywhere,
)
from web.extensions import services
from web.i18n import error_text
from web.requests import client_ip

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: ``next=https://evil.example`` must not become a redirect."""
    if not target:
        return url_for("portal.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("portal.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | WzResponse | tuple[str, int] | tuple[str, int, dict[str, str]]:
    svc = services()
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""), error=None)
    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    ip = client_ip()
    next_url = request.form.get("next", "")
    try:
        svc.limiter.hit("sign_in", f"ip:{ip}", svc.settings.rate_sign_ins_per_min)
    except RateLimited:
        _failed(username, ip, "rate_limited")
        raise
    try:
        svc.lockout.check(username)
        p = svc.sign_in.authenticate(username, password[:1024])
    except RateLimited as locked:
        # The same answer for every name typed, existing or not: only the count differs.
        _failed(username, ip, "locked")
        wait = locked.retry_after_s
        error = _(
            "Too many failed sign-ins for this username. Try again in %(seconds)s s.",
            seconds=wait,
        )
        page = render_template("login.html", next=next_url, error=error)
        return page, 429, {"Retry-After": str(wait)}
    except Unavailable as exc:
        # The directory could not say: not the user's failure, so no lockout count.
        _failed(username, ip, "directory_unavailable")
        return _login_page(next_url, UNREACHABLE, exc), 503
    except Unauthenticated:
        locked_for = svc.lockout.failed(username)
        _failed(username, ip, None, {"locked_s": locked_for} if locked_for else None)
        # Every refusal reads the same (a local or directory password, a disabled account,
        # a name taken by a local account): nothing tells which names exist.
        return _login_page(next_url, WRONG_PASSWORD), 401
    svc.lockout.succeeded(username)
    sign_in(p)
    svc.audit.record(SIGN_IN, actor=p, ip=ip)
    return redirect(_safe_next(request.form.get("next")))


#: what the sign-in page says, in the reader's language (the server's English detail of an
#: outage follows, marked as English)
WRONG_PASSWORD = lazy_gettext("Wrong username or password.")
UNREACHABLE = lazy_gettext("The sign-in service cannot be reached right now; try again shortly.")
SSO_REFUSED = lazy_gettext("The single sign-on did not complete; please try again.")


def _login_page(next_url: str, said: object, detail: DocqaError | None = None) -> str:
    told = error_text(detail) if detail is not None else None
    return render_template(
        "login.html",
        next=next_url,
        error=str(said),
        error_detail=told,
        # marked as English where the catalog had no words for it
        error_detail_english=detail is not None and told == str(detail),
    )


def _failed(
    username: str | None, ip: str | None, reason: str | None, extra: dict[str, int] | None = None
) -> None:
    details: dict[str, object] = {"reason": reason} if reason else {}
    details.update(extra or {})
    services().audit.record(
        SIGN_IN_FAILED, username=username or None, ip=ip, details=details or None
    )


@bp.get("/login/oidc")
def oidc_start() -> str | WzResponse | tuple[str, int]:
    """Off to the OpenID provider; the state, nonce and PKCE verifier wait in the session."""
    svc = services()
    svc.limiter.hit("sign_in", f"ip:{client_ip()}", svc.settings.rate_sign_ins_per_min)
    next_url = _safe_next(request.args.get("next"))
    try:
        url, pending = svc.sign_in.oidc_begin(
            url_for("auth.oidc_callback", _external=True), next_url
        )
    except Unavailable as exc:
        return _login_page(next_url, UNREACHABLE, exc), 503
    session[OIDC_PENDING] = pending.to_dict()
    return redirect(url)


@bp.get("/login/oidc/callback")
def oidc_callback() -> str | WzResponse | tuple[str, int]:
    """The provider's answer: checked once (the pending sign-in leaves the session here,
    so a replayed callback finds nothing to complete)."""
    svc = services()
    ip = client_ip()
    svc.limiter.hit("sign_in", f"ip:{ip}", svc.settings.rate_sign_ins_per_min)
    pending = PendingSignIn.from_dict(session.pop(OIDC_PENDING, None))
    try:
        p, id_token = svc.sign_in.oidc_finish(pending, request.args.to_dict())
    except Unavailable as exc:
        _failed(None, ip, "oidc_unavailable")
        return _login_page("", UNREACHABLE, exc), 503
    except Unauthenticated as exc:
        _failed(None, ip, "oidc_refused")
        return _login_page("", SSO_REFUSED, exc), 401
    sign_in(p)
    session[OIDC_ID_TOKEN] = id_token
    svc.audit.record(SIGN_IN, actor=p, ip=ip, details={"via": "oidc"})
    return redirect(_safe_next(pending.next_url if pending else None))


@bp.post("/logout")
@login_required
def logout() -> WzResponse:
    """Ends this session; after a single sign-on, the provider's session too (RP-initiated
    logout), which then sends the browser back to the sign-in page."""
    p = current_principal()
    id_token = session.get(OIDC_ID_TOKEN)
    sign_out()
    svc = services()
    svc.audit.record(SIGN_OUT, actor=p, ip=client_ip())
    back = url_for("auth.login", _external=True)
    at_provider = svc.sign_in.oidc_logout_url(id_token, back) if isinstance(id_token, str) else None
    return redirect(at_provider or url_for("auth.login"))


@bp.post("/logout/everywhere")
@login_required
def logout_everywhere() -> WzResponse:
    p = current_principal()
    ended = sign_out_everywhere(p)
    services().audit.record(
        SIGN_OUT_EVERYWHERE, actor=p, target=p.username, details={"sessions": ended}, ip=client_ip()
    )
    return redirect(url_for("auth.login"))
