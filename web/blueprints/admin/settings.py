"""The default system prompt and the audit log."""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from qa.accounts.audit import (
    ACTIONS,
    SETTINGS_CHANGE,
)
from qa.answering.prompt import DECLINE_INSTRUCTION
from qa.errors import InvalidInput
from qa.limits import MAX_INT_ID
from qa.messages import N_
from web.auth import admin_required, current_principal
from web.blueprints.admin import (
    AUDIT_PAGE_SIZE,
    MAX_PROMPT_CHARS,
    Page,
    Redirect,
    bp,
)
from web.blueprints.admin.forms import (
    done,
    ip,
)
from web.extensions import services
from web.requests import arg_int

# --- settings and audit log --------------------------------------------------------------


@bp.get("/settings")
@admin_required
def settings() -> Page:
    svc = services()
    return render_template(
        "admin/settings.html",
        system_prompt=svc.config.default_system_prompt() or "",
        builtin_prompt=svc.answers.default_system_prompt,
        decline_instruction=DECLINE_INSTRUCTION,
    )


@bp.post("/settings")
@admin_required
def save_settings() -> Redirect:
    svc = services()
    text = request.form.get("system_prompt")
    if text is None:
        raise InvalidInput(N_("the field 'system_prompt' is required (empty resets it)"))
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            N_("the system prompt is longer than %(max)s characters", max=MAX_PROMPT_CHARS)
        )
    text = text.replace("\r\n", "\n")  # browsers send CRLF from a textarea
    svc.config.set_default_system_prompt(text)
    change = "reset" if not text.strip() else "set"
    details = {"default_system_prompt": change, "chars": len(text.strip())}
    svc.audit.record(SETTINGS_CHANGE, actor=current_principal(), details=details, ip=ip())
    said = (
        _("Default system prompt reset.")
        if change == "reset"
        else _("Default system prompt saved.")
    )
    return done(said, "admin.settings")


def _audit_filters() -> tuple[str | None, int | None]:
    action = request.args.get("action") or None
    if action is not None and len(action) > 48:
        raise InvalidInput(N_("query parameter 'action' is too long"))
    user_id = arg_int("user", 0, 0, MAX_INT_ID) or None
    return action, user_id


@bp.get("/audit")
@admin_required
def audit() -> Page:
    svc = services()
    action, user_id = _audit_filters()
    page = arg_int("page", 1, 1, 100_000)
    # One extra row tells whether there is a next page without counting the whole log.
    events = svc.audit.list(
        limit=AUDIT_PAGE_SIZE + 1,
        offset=(page - 1) * AUDIT_PAGE_SIZE,
        action=action,
        user_id=user_id,
    )
    return render_template(
        "admin/audit.html",
        events=events[:AUDIT_PAGE_SIZE],
        has_next=len(events) > AUDIT_PAGE_SIZE,
        page=page,
        action=action,
        user_id=user_id,
        actions=ACTIONS,
        users=svc.accounts.list_users(),
        page_url=_audit_page_url(action, user_id),
    )


def _audit_page_url(action: str | None, user_id: int | None) -> Callable[[int], str]:
    def url(page: int) -> str:
        return url_for("admin.audit", action=action or None, user=user_id, page=page)

    return url
