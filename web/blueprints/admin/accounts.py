"""Users, groups and API tokens."""

from __future__ import annotations

from typing import Any

from flask import (
    render_template,
    request,
)
from flask_babel import gettext as _

from qa.accounts.account_changes import create_and_record, update_and_record
from qa.accounts.audit import (
    GROUP_CREATE,
    GROUP_DELETE,
    GROUP_UPDATE,
    TOKEN_CREATE,
    TOKEN_REVOKE,
    USER_DELETE,
)
from qa.accounts.directory_accounts import MAX_EXTERNAL_GROUP_CHARS, DirectoryAccounts
from qa.accounts.ldap_directory import SOURCE as LDAP
from qa.accounts.users import ROLES
from qa.errors import InvalidInput, NotFound
from qa.messages import N_, Translatable
from qa.store.db.models import Group
from web.auth import admin_required, current_principal, login_required, sign_in
from web.blueprints.admin import (
    MAX_PASSWORD_CHARS,
    Page,
    Redirect,
    bp,
)
from web.blueprints.admin.forms import (
    done,
    form_ids,
    form_optional,
    form_text,
    ip,
    parse_id,
)
from web.extensions import services
from web.i18n import with_names

# --- users -------------------------------------------------------------------------------


@bp.get("/users")
@admin_required
def users() -> Page:
    return render_template("admin/users.html", users=services().accounts.list_users(), roles=ROLES)


@bp.post("/users")
@admin_required
def create_user() -> Redirect:
    svc = services()
    created = create_and_record(
        svc.accounts,
        svc.audit,
        form_text("username", max_len=64),
        form_text("password", max_len=MAX_PASSWORD_CHARS, strip=False),
        form_text("role", max_len=16),
        form_optional("display_name"),
        actor=current_principal(),
        ip=ip(),
    )
    return done(with_names(_("User %(name)s created."), name=created.username), "admin.users")


def _update_user(user_id: int, changes: dict[str, Any], audit: dict[str, Any]) -> Redirect:
    """``update_and_record``, then a new session for an admin whose own change ended theirs."""
    svc = services()
    actor = current_principal()
    result = update_and_record(
        svc.accounts, svc.audit, user_id, changes, audit, actor=actor, ip=ip()
    )
    updated = result.principal
    if result.session_reasons and user_id == actor.user_id:
        sign_in(updated)  # an admin changing their own account stays signed in, anew
    return done(with_names(_("User %(name)s updated."), name=updated.username), "admin.users")


def _not_yourself(user_id: int, what: Translatable) -> None:
    # Locking yourself out mid-session is never what an admin meant to do.
    if user_id == current_principal().user_id:
        raise InvalidInput(N_("you cannot %(what)s your own account; ask another admin", what=what))


@bp.post("/users/<int:user_id>/update")
@admin_required
def update_user(user_id: int) -> Redirect:
    role = form_text("role", max_len=16)
    name = form_optional("display_name")
    changes: dict[str, Any] = {"role": role}
    if name is not None:
        changes["display_name"] = name  # "" clears it
    return _update_user(user_id, changes, dict(changes))


@bp.post("/users/<int:user_id>/disable")
@admin_required
def disable_user(user_id: int) -> Redirect:
    _not_yourself(user_id, N_("disable"))
    return _update_user(user_id, {"disabled": True}, {"disabled": True})


@bp.post("/users/<int:user_id>/enable")
@admin_required
def enable_user(user_id: int) -> Redirect:
    return _update_user(user_id, {"disabled": False}, {"disabled": False})


@bp.post("/users/<int:user_id>/password")
@admin_required
def reset_password(user_id: int) -> Redirect:
    password = form_text("password", max_len=MAX_PASSWORD_CHARS, strip=False)
    # The audit log says that the password changed, never what it is.
    return _update_user(user_id, {"password": password}, {"password": "reset"})


@bp.post("/users/<int:user_id>/delete")
@admin_required
def delete_user(user_id: int) -> Redirect:
    _not_yourself(user_id, N_("delete"))
    svc = services()
    username = svc.accounts.get_user(user_id).username
    svc.accounts.delete_user(user_id)
    details = {"user_id": user_id}
    svc.audit.record(
        USER_DELETE, actor=current_principal(), target=username, details=details, ip=ip()
    )
    return done(with_names(_("User %(name)s deleted."), name=username), "admin.users")


# --- groups ------------------------------------------------------------------------------


def _group(group_id: int) -> tuple[Group, list[int]]:
    for grp, members in services().accounts.list_groups():
        if grp.id == group_id:
            return grp, members
    raise NotFound(N_("no group with id %(id)s", id=group_id))


def _record_group(action: str, name: str, details: dict[str, Any]) -> None:
    services().audit.record(
        action, actor=current_principal(), target=name, details=details, ip=ip()
    )


@bp.get("/groups")
@admin_required
def groups() -> Page:
    svc = services()
    all_users = svc.accounts.list_users()
    names = {u.id: u.username for u in all_users}
    return render_template(
        "admin/groups.html",
        groups=svc.accounts.list_groups(),
        users=all_users,
        names=names,
        external=[(e, e.accounts.group_maps()) for e in svc.sign_in.external_sources()],
    )


def _source_accounts() -> DirectoryAccounts:
    source = request.form.get("source") or LDAP
    if not services().sign_in.external_sources():
        raise NotFound(
            N_("no directory or single sign-on is configured (DOCQA_LDAP_URL, DOCQA_OIDC_ISSUER)")
        )
    return services().sign_in.source_accounts(source)


@bp.post("/groups/directory")
@admin_required
def add_directory_map() -> Redirect:
    external = form_text("directory_group", max_len=MAX_EXTERNAL_GROUP_CHARS)
    group_id = parse_id(form_text("group_id", max_len=20), "group_id")
    accounts = _source_accounts()
    accounts.add_group_map(external, group_id, actor=current_principal())
    if accounts.source == LDAP:
        said = _("Members of %(name)s join at their next sign-in or the next re-sync.")
    else:
        said = _("Members of %(name)s join at their next sign-in.")
    return done(with_names(said, name=external), "admin.groups")


@bp.post("/groups/directory/<int:map_id>/delete")
@admin_required
def delete_directory_map(map_id: int) -> Redirect:
    _source_accounts().remove_group_map(map_id, actor=current_principal())
    return done(
        _("Mapping removed; its members leave the group at their next sign-in."), "admin.groups"
    )


@bp.post("/groups")
@admin_required
def create_group() -> Redirect:
    grp = services().accounts.create_group(form_text("name"))
    _record_group(GROUP_CREATE, grp.name, {"group_id": grp.id})
    return done(with_names(_("Group %(name)s created."), name=grp.name), "admin.groups")


@bp.post("/groups/<int:group_id>/rename")
@admin_required
def rename_group(group_id: int) -> Redirect:
    old, _members = _group(group_id)
    old_name = old.name
    grp = services().accounts.rename_group(group_id, form_text("name"))
    _record_group(GROUP_UPDATE, grp.name, {"group_id": group_id, "from": old_name})
    return done(with_names(_("Group renamed to %(name)s."), name=grp.name), "admin.groups")


@bp.post("/groups/<int:group_id>/members")
@admin_required
def set_members(group_id: int) -> Redirect:
    grp, _members = _group(group_id)
    user_ids = form_ids("user_id")  # none checked = an empty group
    services().accounts.set_members(group_id, user_ids)
    _record_group(GROUP_UPDATE, grp.name, {"group_id": group_id, "members": sorted(set(user_ids))})
    return done(with_names(_("Members of %(name)s saved."), name=grp.name), "admin.groups")


@bp.post("/groups/<int:group_id>/delete")
@admin_required
def delete_group(group_id: int) -> Redirect:
    grp, _members = _group(group_id)
    services().accounts.delete_group(group_id)
    _record_group(GROUP_DELETE, grp.name, {"group_id": group_id})
    return done(with_names(_("Group %(name)s deleted."), name=grp.name), "admin.groups")


# --- API tokens (every signed-in user manages their own) ------------------------------------


@bp.get("/tokens")
@login_required
def tokens() -> Page:
    p = current_principal()
    svc = services()
    everyone = svc.accounts.list_tokens(None) if p.is_admin else []
    names = {u.id: u.username for u in svc.accounts.list_users()} if p.is_admin else {}
    return render_template(
        "admin/tokens.html",
        mine=svc.accounts.list_tokens(p.user_id),
        everyone=everyone,
        names=names,
    )


@bp.post("/tokens")
@login_required
def create_token() -> Page:
    p = current_principal()
    svc = services()
    plaintext, token = svc.accounts.create_token(p.user_id, form_text("name"))
    details = {"token_id": token.id, "prefix": token.prefix}
    svc.audit.record(TOKEN_CREATE, actor=p, target=token.name, details=details, ip=ip())
    # Rendered, not redirected: the plaintext must never sit in a (readable) session
    # cookie, and this no-store page is the only place it ever appears.
    page = render_template("admin/token_created.html", token=token, plaintext=plaintext)
    return page, 201


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Redirect:
    p = current_principal()
    svc = services()
    owner = None if p.is_admin else p.user_id  # someone else's token is NotFound for non-admins
    svc.accounts.revoke_token(token_id, owner_id=owner)
    token = next((t for t in svc.accounts.list_tokens(owner) if t.id == token_id), None)
    name = token.name if token is not None else f"#{token_id}"
    details = {"token_id": token_id, "owner_id": token.user_id if token else None}
    svc.audit.record(TOKEN_REVOKE, actor=p, target=name, details=details, ip=ip())
    return done(with_names(_("Token %(name)s revoked."), name=name), "admin.tokens")
