"""Sign-in and sign-out pages (form posts, CSRF-protected like every other form)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WzResponse

from qa.errors import RateLimited, Unauthenticated
from web.auth import current_principal, login_required, sign_in, sign_out
from web.extensions import services
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
def login() -> str | WzResponse | tuple[str, int]:
    svc = services()
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""), error=None)
    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    ip = client_ip()
    try:
        svc.limiter.hit("sign_in", f"ip:{ip}", svc.settings.rate_sign_ins_per_min)
        p = svc.accounts.authenticate(username, password[:1024])
    except Unauthenticated as exc:
        svc.audit.record("sign_in_failed", username=username or None, ip=ip)
        page = render_template("login.html", next=request.form.get("next", ""), error=str(exc))
        return page, 401
    except RateLimited:
        svc.audit.record(
            "sign_in_failed", username=username or None, ip=ip, details={"reason": "rate_limited"}
        )
        raise
    sign_in(p)
    svc.audit.record("sign_in", actor=p, ip=ip)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
@login_required
def logout() -> WzResponse:
    p = current_principal()
    services().audit.record("sign_out", actor=p, ip=client_ip())
    sign_out()
    return redirect(url_for("auth.login"))
