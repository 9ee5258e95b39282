"""The admin console under ``/admin``: collections, uploads, access, users, groups, API
tokens, settings and the audit log.

Server-rendered pages with classic form posts (hidden ``csrf_token`` field) and
Post/Redirect/Get with flash messages. Routes stay thin: parse the form, call one qa
service, redirect. The library audits itself; calls that go straight to accounts, access
or config are audited here. Two JSON endpoints serve the collection page's script: one
upload per file (so each file gets its own progress bar) and the document status poll.

Who may do what:

    admin   everything
    editor  collections they may write (create, upload, delete, retry, reindex) and a
            read-only view of those collections' grants
    reader  only their own API tokens (``/admin/tokens``); every other page answers 403

The console is for browsers: requests authenticated by an API token are refused, so a
leaked token cannot mint new tokens or manage the service (the REST API is under /api/v1).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response as WzResponse

from qa.access import GrantView
from qa.accounts import ROLES, Principal
from qa.audit import (
    ACTIONS,
    GRANT,
    GROUP_CREATE,
    GROUP_DELETE,
    GROUP_UPDATE,
    REVOKE,
    SETTINGS_CHANGE,
    TOKEN_CREATE,
    TOKEN_REVOKE,
    USER_CREATE,
    USER_DELETE,
    USER_UPDATE,
)
from qa.blobstore import display_name
from qa.db.models import DocStatus, Group
from qa.errors import DocqaError, InvalidInput, NotFound, PermissionDenied
from qa.library import CollectionView, document_dict
from web.auth import admin_required, current_principal, login_required, roles_required
from web.errors import error_response, status_for, wants_json
from web.requests import arg_int, client_ip
from web.services import services

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: admins and editors; readers get 403 (tokens excepted, see ``tokens``)
console = roles_required("admin", "editor")

Page = str | tuple[str, int]
Redirect = WzResponse

AUDIT_PAGE_SIZE = 50
MAX_NAME_CHARS = 200
MAX_PASSWORD_CHARS = 1024
MAX_PROMPT_CHARS = 20_000  # the config layer enforces the real limit with a clear message
#: endpoints that always answer JSON, whatever the client's Accept header says
JSON_ENDPOINTS = frozenset({"admin.upload", "admin.documents_json"})


# --- request plumbing ------------------------------------------------------------------


@bp.before_request
def _browser_sessions_only() -> None:
    if g.get("auth_kind") == "token":
        raise PermissionDenied("the admin console needs a signed-in browser session")


@bp.errorhandler(DocqaError)
def _error(exc: DocqaError) -> Response:
    """Errors inside the console: JSON for the script's endpoints, else a page with a way
    back to where the user came from (instead of the portal link of the generic page)."""
    status = status_for(exc)
    if status >= 500:
        log.error("admin console error: %s", exc, exc_info=exc)
    retry = getattr(exc, "retry_after_s", None)
    retry_after = retry if isinstance(retry, int) else None
    if request.endpoint in JSON_ENDPOINTS and not wants_json():
        # The script's endpoints answer JSON even to a fetch() that accepts anything
        # (web.errors decides by the Accept header); same shape as web.errors.
        resp = jsonify({"error": {"code": exc.code, "message": str(exc)}})
        resp.status_code = status
    elif wants_json():
        return error_response(status, exc.code, str(exc), retry_after)
    else:
        page = render_template(
            "admin/error.html", status=status, code=exc.code, message=str(exc), back=_back_url()
        )
        resp = Response(page, status=status, mimetype="text/html")
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _back_url() -> str:
    """The referring page when it is one of ours, else the console's start page."""
    ref = urlsplit(request.referrer or "")
    if ref.netloc == request.host and ref.path.startswith("/") and ref.path != request.path:
        return ref.path + (f"?{ref.query}" if ref.query else "")
    p = g.get("principal")
    if p is not None and not p.can_manage_collections:
        return url_for("admin.tokens")
    return url_for("admin.index")


def _form_text(name: str, *, max_len: int = MAX_NAME_CHARS, strip: bool = True) -> str:
    """A required text field; a missing or blank one is a clear 400."""
    value = request.form.get(name)
    if value is None or not value.strip():
        raise InvalidInput(f"the field '{name}' is required")
    if len(value) > max_len:
        raise InvalidInput(f"the field '{name}' is longer than {max_len} characters")
    return value.strip() if strip else value


def _form_optional(name: str, *, max_len: int = MAX_NAME_CHARS) -> str | None:
    value = request.form.get(name)
    if value is None:
        return None
    if len(value) > max_len:
        raise InvalidInput(f"the field '{name}' is longer than {max_len} characters")
    return value.strip()


def _parse_id(raw: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"the field '{name}' must be a whole number") from None
    if value < 1:
        raise InvalidInput(f"the field '{name}' must be a positive id")
    return value


def _form_ids(name: str) -> list[int]:
    return [_parse_id(raw, name) for raw in request.form.getlist(name)]


def _form_principal() -> tuple[int | None, int | None]:
    """The ``principal`` field, ``user:<id>`` or ``group:<id>`` -> (user_id, group_id)."""
    kind, _, raw = _form_text("principal", max_len=40).partition(":")
    if kind not in ("user", "group"):
        raise InvalidInput("the field 'principal' must be 'user:<id>' or 'group:<id>'")
    pid = _parse_id(raw, "principal")
    return (pid, None) if kind == "user" else (None, pid)


def _done(message: str, endpoint: str, **values: Any) -> Redirect:
    """Post/Redirect/Get: the outcome travels as a flash message."""
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def _ip() -> str | None:
    return client_ip()


# --- overview and collections ------------------------------------------------------------


def _status_counts(p: Principal, collection_id: int) -> dict[str, int]:
    counts = Counter(d.status for d in services().library.documents(p, collection_id))
    return {status: counts.get(status, 0) for status in DocStatus.ALL}


@bp.get("")
@console
def index() -> Page:
    p = current_principal()
    rows = [(view, _status_counts(p, view.id)) for view in services().library.collections(p)]
    return render_template("admin/index.html", rows=rows, statuses=DocStatus.ALL)


@bp.get("/collections")
@console
def collections() -> Page:
    views = services().library.collections(current_principal())
    return render_template("admin/collections.html", collections=views)


@bp.post("/collections")
@console
def create_collection() -> Redirect:
    name = _form_text("name")
    cid = services().library.create_collection(current_principal(), name, ip=_ip())
    return _done(f"Collection {name!r} created.", "admin.collection", cid=cid)


def _status_filter() -> str | None:
    status = request.args.get("status") or None
    if status is not None and status not in DocStatus.ALL:
        raise InvalidInput(f"unknown status {status!r}; one of {', '.join(DocStatus.ALL)}")
    return status


def _visible_grants(p: Principal, view: CollectionView) -> list[GrantView] | None:
    """Grants are shown to admins and to editors who may write the collection."""
    if p.is_admin or view.permission == "write":
        return services().access.grants(view.id)
    return None


@bp.get("/collections/<int:cid>")
@console
def collection(cid: int) -> Page:
    p = current_principal()
    svc = services()
    view = svc.library.collection(p, cid)
    status = _status_filter()
    docs = svc.library.documents(p, cid, status)
    return render_template(
        "admin/collection.html",
        coll=view,
        can_write=view.permission == "write",
        documents=docs,
        status=status,
        statuses=DocStatus.ALL,
        counts=_status_counts(p, cid),
        grants=_visible_grants(p, view),
        users=svc.accounts.list_users() if p.is_admin else [],
        groups=[grp for grp, _ in svc.accounts.list_groups()] if p.is_admin else [],
        max_upload_mb=svc.settings.max_upload_mb,
    )


@bp.post("/collections/<int:cid>/rename")
@console
def rename_collection(cid: int) -> Redirect:
    name = _form_text("name")
    services().library.rename_collection(current_principal(), cid, name, ip=_ip())
    return _done(f"Renamed to {name!r}.", "admin.collection", cid=cid)


@bp.post("/collections/<int:cid>/delete")
@console
def delete_collection(cid: int) -> Redirect:
    p = current_principal()
    svc = services()
    view = svc.library.collection(p, cid)
    # Deleting a collection deletes every document in it: the name must be typed.
    if (request.form.get("confirm") or "").strip() != view.name:
        raise InvalidInput(f"type the collection name {view.name!r} to confirm the deletion")
    n = svc.library.delete_collection(p, cid, ip=_ip())
    return _done(f"Collection {view.name!r} and its {n} documents deleted.", "admin.collections")


# --- uploads and documents -------------------------------------------------------------


def _upload_files() -> list[FileStorage]:
    files = request.files.getlist("file")
    if not files:
        raise InvalidInput("send the file in the multipart form field 'file'")
    for storage in files:
        if not (storage.filename or "").strip():
            raise InvalidInput("every uploaded file needs a file name")
    return files


@bp.post("/collections/<int:cid>/upload")
@console
def upload(cid: int) -> Response | Redirect:
    """One file per request from the page's script (a zip expands into its members);
    the plain form fallback may send several and gets a redirect."""
    p = current_principal()
    svc = services()
    svc.access.require_write(p, cid)  # before reading a possibly large body
    uploads: list[dict[str, object]] = []
    for storage in _upload_files():
        sent = storage.filename or ""
        for item in svc.library.upload(p, cid, storage.stream, sent, ip=_ip()):
            # ``source`` tells the script which of its rows an entry belongs to (a zip's
            # members are named "<archive>/<member>").
            uploads.append({**item.to_dict(), "source": display_name(sent)})
    if wants_json():
        resp = jsonify({"uploads": uploads})
        resp.status_code = 202
        return resp
    failed = sum(1 for u in uploads if u["status"] == DocStatus.FAILED)
    flash(f"{len(uploads)} file(s) accepted, {failed} refused; processing runs in the background.")
    return redirect(url_for("admin.collection", cid=cid))


@bp.get("/collections/<int:cid>/documents.json")
@console
def documents_json(cid: int) -> Response:
    docs = services().library.documents(current_principal(), cid, _status_filter())
    return jsonify([document_dict(d) for d in docs])


def _doc_ids_of(p: Principal, cid: int, ids: list[str]) -> list[str]:
    """The ids, each checked to be a document of this collection (the URL names one)."""
    if not ids:
        raise InvalidInput("choose at least one document (field 'doc_id')")
    lib = services().library
    for doc_id in ids:
        if len(doc_id) > 64 or lib.document(p, doc_id).collection_id != cid:
            raise NotFound(f"no document {doc_id[:64]!r} in collection {cid}")
    return ids


def _back_to_collection(cid: int, message: str) -> Redirect:
    status = request.form.get("status") or None
    values: dict[str, Any] = {"cid": cid}
    if status in DocStatus.ALL:
        values["status"] = status  # keep the table filter the user was looking at
    return _done(message, "admin.collection", **values)


@bp.post("/collections/<int:cid>/documents/delete")
@console
def delete_documents(cid: int) -> Redirect:
    p = current_principal()
    ids = _doc_ids_of(p, cid, request.form.getlist("doc_id"))
    names = services().library.delete_documents(p, ids, ip=_ip())
    return _back_to_collection(cid, f"Deleted {', '.join(names)}.")


@bp.post("/collections/<int:cid>/retry")
@console
def retry(cid: int) -> Redirect:
    """Retry the chosen documents, or without ``doc_id`` every failed one."""
    p = current_principal()
    svc = services()
    svc.access.require_write(p, cid)
    ids = request.form.getlist("doc_id")
    if ids:
        ids = _doc_ids_of(p, cid, ids)
    else:
        ids = [d.id for d in svc.library.documents(p, cid, DocStatus.FAILED)]
    if not ids:
        return _back_to_collection(cid, "No failed documents to retry.")
    n = svc.library.retry(p, ids, ip=_ip())
    return _back_to_collection(cid, f"{n} document(s) queued again.")


@bp.post("/collections/<int:cid>/reindex")
@console
def reindex(cid: int) -> Redirect:
    services().library.reindex(current_principal(), cid, ip=_ip())
    return _back_to_collection(cid, "Re-indexing started; search uses the old index until then.")


# --- grants (admins change them; editors who may write only see them) -------------------------


def _grant_label(grants: list[GrantView], user_id: int | None, group_id: int | None) -> str:
    for gv in grants:
        if user_id is not None and gv.user_id == user_id:
            return f"user {gv.username}"
        if group_id is not None and gv.group_id == group_id:
            return f"group {gv.group_name}"
    return f"user #{user_id}" if user_id is not None else f"group #{group_id}"


@bp.post("/collections/<int:cid>/grants")
@admin_required
def grant(cid: int) -> Redirect:
    p = current_principal()
    svc = services()
    user_id, group_id = _form_principal()
    permission = _form_text("permission", max_len=16)
    view = svc.library.collection(p, cid)
    svc.access.grant(cid, permission, user_id=user_id, group_id=group_id)
    who = _grant_label(svc.access.grants(cid), user_id, group_id)
    details = {"user_id": user_id, "group_id": group_id, "who": who, "permission": permission}
    svc.audit.record(GRANT, actor=p, target=view.name, details=details, ip=_ip())
    return _done(f"{who} may now {permission} {view.name!r}.", "admin.collection", cid=cid)


@bp.post("/collections/<int:cid>/grants/revoke")
@admin_required
def revoke(cid: int) -> Redirect:
    p = current_principal()
    svc = services()
    user_id, group_id = _form_principal()
    view = svc.library.collection(p, cid)
    who = _grant_label(svc.access.grants(cid), user_id, group_id)
    svc.access.revoke(cid, user_id=user_id, group_id=group_id)
    details = {"user_id": user_id, "group_id": group_id, "who": who}
    svc.audit.record(REVOKE, actor=p, target=view.name, details=details, ip=_ip())
    return _done(f"Access of {who} to {view.name!r} revoked.", "admin.collection", cid=cid)


# --- users -------------------------------------------------------------------------------


@bp.get("/users")
@admin_required
def users() -> Page:
    return render_template("admin/users.html", users=services().accounts.list_users(), roles=ROLES)


@bp.post("/users")
@admin_required
def create_user() -> Redirect:
    svc = services()
    created = svc.accounts.create_user(
        _form_text("username", max_len=64),
        _form_text("password", max_len=MAX_PASSWORD_CHARS, strip=False),
        _form_text("role", max_len=16),
        _form_optional("display_name"),
    )
    details = {"user_id": created.user_id, "role": created.role}
    svc.audit.record(
        USER_CREATE, actor=current_principal(), target=created.username, details=details, ip=_ip()
    )
    return _done(f"User {created.username!r} created.", "admin.users")


def _update_user(user_id: int, changes: dict[str, Any], audit: dict[str, Any]) -> Redirect:
    """Apply ``changes`` (qa refuses to lose the last admin) and audit ``audit``."""
    svc = services()
    updated = svc.accounts.update_user(user_id, **changes)
    details = {"user_id": user_id, **audit}
    svc.audit.record(
        USER_UPDATE, actor=current_principal(), target=updated.username, details=details, ip=_ip()
    )
    return _done(f"User {updated.username!r} updated.", "admin.users")


def _not_yourself(user_id: int, what: str) -> None:
    # Locking yourself out mid-session is never what an admin meant to do.
    if user_id == current_principal().user_id:
        raise InvalidInput(f"you cannot {what} your own account; ask another admin")


@bp.post("/users/<int:user_id>/update")
@admin_required
def update_user(user_id: int) -> Redirect:
    role = _form_text("role", max_len=16)
    name = _form_optional("display_name")
    changes: dict[str, Any] = {"role": role}
    if name is not None:
        changes["display_name"] = name  # "" clears it
    return _update_user(user_id, changes, dict(changes))


@bp.post("/users/<int:user_id>/disable")
@admin_required
def disable_user(user_id: int) -> Redirect:
    _not_yourself(user_id, "disable")
    return _update_user(user_id, {"disabled": True}, {"disabled": True})


@bp.post("/users/<int:user_id>/enable")
@admin_required
def enable_user(user_id: int) -> Redirect:
    return _update_user(user_id, {"disabled": False}, {"disabled": False})


@bp.post("/users/<int:user_id>/password")
@admin_required
def reset_password(user_id: int) -> Redirect:
    password = _form_text("password", max_len=MAX_PASSWORD_CHARS, strip=False)
    # The audit log says that the password changed, never what it is.
    return _update_user(user_id, {"password": password}, {"password": "reset"})


@bp.post("/users/<int:user_id>/delete")
@admin_required
def delete_user(user_id: int) -> Redirect:
    _not_yourself(user_id, "delete")
    svc = services()
    username = svc.accounts.get_user(user_id).username
    svc.accounts.delete_user(user_id)
    details = {"user_id": user_id}
    svc.audit.record(
        USER_DELETE, actor=current_principal(), target=username, details=details, ip=_ip()
    )
    return _done(f"User {username!r} deleted.", "admin.users")


# --- groups ------------------------------------------------------------------------------


def _group(group_id: int) -> tuple[Group, list[int]]:
    for grp, members in services().accounts.list_groups():
        if grp.id == group_id:
            return grp, members
    raise NotFound(f"no group with id {group_id}")


def _record_group(action: str, name: str, details: dict[str, Any]) -> None:
    services().audit.record(
        action, actor=current_principal(), target=name, details=details, ip=_ip()
    )


@bp.get("/groups")
@admin_required
def groups() -> Page:
    svc = services()
    all_users = svc.accounts.list_users()
    names = {u.id: u.username for u in all_users}
    return render_template(
        "admin/groups.html", groups=svc.accounts.list_groups(), users=all_users, names=names
    )


@bp.post("/groups")
@admin_required
def create_group() -> Redirect:
    grp = services().accounts.create_group(_form_text("name"))
    _record_group(GROUP_CREATE, grp.name, {"group_id": grp.id})
    return _done(f"Group {grp.name!r} created.", "admin.groups")


@bp.post("/groups/<int:group_id>/rename")
@admin_required
def rename_group(group_id: int) -> Redirect:
    old, _ = _group(group_id)
    old_name = old.name
    grp = services().accounts.rename_group(group_id, _form_text("name"))
    _record_group(GROUP_UPDATE, grp.name, {"group_id": group_id, "from": old_name})
    return _done(f"Group renamed to {grp.name!r}.", "admin.groups")


@bp.post("/groups/<int:group_id>/members")
@admin_required
def set_members(group_id: int) -> Redirect:
    grp, _ = _group(group_id)
    user_ids = _form_ids("user_id")  # none checked = an empty group
    services().accounts.set_members(group_id, user_ids)
    _record_group(GROUP_UPDATE, grp.name, {"group_id": group_id, "members": sorted(set(user_ids))})
    return _done(f"Members of {grp.name!r} saved.", "admin.groups")


@bp.post("/groups/<int:group_id>/delete")
@admin_required
def delete_group(group_id: int) -> Redirect:
    grp, _ = _group(group_id)
    services().accounts.delete_group(group_id)
    _record_group(GROUP_DELETE, grp.name, {"group_id": group_id})
    return _done(f"Group {grp.name!r} deleted.", "admin.groups")


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
    plaintext, token = svc.accounts.create_token(p.user_id, _form_text("name"))
    details = {"token_id": token.id, "prefix": token.prefix}
    svc.audit.record(TOKEN_CREATE, actor=p, target=token.name, details=details, ip=_ip())
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
    svc.audit.record(TOKEN_REVOKE, actor=p, target=name, details=details, ip=_ip())
    return _done(f"Token {name!r} revoked.", "admin.tokens")


# --- settings and audit log --------------------------------------------------------------


@bp.get("/settings")
@admin_required
def settings() -> Page:
    svc = services()
    return render_template(
        "admin/settings.html",
        system_prompt=svc.config.default_system_prompt() or "",
        builtin_prompt=svc.answers.default_system_prompt,
    )


@bp.post("/settings")
@admin_required
def save_settings() -> Redirect:
    svc = services()
    text = request.form.get("system_prompt")
    if text is None:
        raise InvalidInput("the field 'system_prompt' is required (empty resets it)")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"the system prompt is longer than {MAX_PROMPT_CHARS} characters")
    text = text.replace("\r\n", "\n")  # browsers send CRLF from a textarea
    svc.config.set_default_system_prompt(text)
    change = "reset" if not text.strip() else "set"
    details = {"default_system_prompt": change, "chars": len(text.strip())}
    svc.audit.record(SETTINGS_CHANGE, actor=current_principal(), details=details, ip=_ip())
    return _done(
        "Default system prompt " + ("reset." if change == "reset" else "saved."), "admin.settings"
    )


def _audit_filters() -> tuple[str | None, int | None]:
    action = request.args.get("action") or None
    if action is not None and len(action) > 48:
        raise InvalidInput("query parameter 'action' is too long")
    user_id = arg_int("user", 0, 0, 2**31 - 1) or None
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
