"""Overview, collections, uploads, documents and grants."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from flask import (
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_translations, ngettext
from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.datastructures import FileStorage

from qa.accounts.access import GrantView
from qa.accounts.audit import (
    GRANT,
    REVOKE,
)
from qa.accounts.users import Principal
from qa.errors import InvalidInput, NotFound
from qa.library.service import CollectionView
from qa.library.sync_sources import MAX_GLOBS, parse_interval
from qa.messages import N_
from qa.store.blobstore import display_name
from qa.store.db.models import DocStatus
from qa.store.db.models import Document as DocumentRow
from web.auth import admin_required, current_principal
from web.blueprints.admin import (
    Page,
    Redirect,
    bp,
    console,
)
from web.blueprints.admin.forms import (
    done,
    form_principal,
    form_text,
    ip,
)
from web.bodies import upload_endpoint
from web.contracts.api import Document
from web.errors import wants_json
from web.extensions import services
from web.i18n import with_names

# --- overview and collections ------------------------------------------------------------


def _status_counts(docs: Iterable[DocumentRow]) -> dict[str, int]:
    counts = Counter(d.status for d in docs)
    return {status: counts.get(status, 0) for status in DocStatus.ALL}


@bp.get("")
@console
def index() -> Page:
    p = current_principal()
    lib = services().library
    rows = [(view, _status_counts(lib.documents(p, view.id))) for view in lib.collections(p)]
    return render_template("admin/index.html", rows=rows, statuses=DocStatus.ALL)


@bp.get("/collections")
@console
def collections() -> Page:
    views = services().library.collections(current_principal())
    return render_template("admin/collections.html", collections=views)


@bp.post("/collections")
@console
def create_collection() -> Redirect:
    name = form_text("name")
    cid = services().library.create_collection(current_principal(), name, ip=ip())
    said = with_names(_("Collection %(name)s created."), name=name)
    return done(said, "admin.collection", cid=cid)


def _status_filter() -> str | None:
    status = request.args.get("status") or None
    if status is not None and status not in DocStatus.ALL:
        raise InvalidInput(
            N_(
                "unknown status %(status)s; one of %(statuses)s",
                status=repr(status),
                statuses=", ".join(DocStatus.ALL),
            )
        )
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
    every = svc.library.documents(p, cid)
    failed = [d for d in every if d.status == DocStatus.FAILED]
    return render_template(
        "admin/collection.html",
        coll=view,
        can_write=view.permission == "write",
        documents=[d for d in every if status is None or d.status == status],
        status=status,
        statuses=DocStatus.ALL,
        counts=_status_counts(every),
        storage_bytes=sum(d.size_bytes for d in every),
        failures=Counter(d.error_code or "unknown" for d in failed).most_common(),
        retryable=sum(1 for d in failed if d.retryable),
        grants=_visible_grants(p, view),
        users=svc.accounts.list_users() if p.is_admin else [],
        groups=[grp for grp, _ in svc.accounts.list_groups()] if p.is_admin else [],
        max_upload_mb=svc.settings.max_upload_mb,
        synced=svc.sync_sources.list(cid),
    )


@bp.post("/collections/<int:cid>/rename")
@console
def rename_collection(cid: int) -> Redirect:
    name = form_text("name")
    services().library.rename_collection(current_principal(), cid, name, ip=ip())
    return done(with_names(_("Renamed to %(name)s."), name=name), "admin.collection", cid=cid)


@bp.post("/collections/<int:cid>/delete")
@console
def delete_collection(cid: int) -> Redirect:
    p = current_principal()
    svc = services()
    view = svc.library.collection(p, cid)
    # Deleting a collection deletes every document in it: the name must be typed.
    if (request.form.get("confirm") or "").strip() != view.name:
        raise InvalidInput(
            N_("type the collection name %(name)s to confirm the deletion", name=repr(view.name))
        )
    n = svc.library.delete_collection(p, cid, ip=ip())
    # unformatted (ngettext would fill only %(num)s): with_names fills both
    said = get_translations().ungettext(
        "Collection %(name)s and its %(num)s document deleted.",
        "Collection %(name)s and its %(num)s documents deleted.",
        n,
    )
    return done(with_names(said, name=view.name, num=n), "admin.collections")


# --- uploads and documents -------------------------------------------------------------


def _upload_files() -> list[FileStorage]:
    files = request.files.getlist("file")
    if not files:
        raise InvalidInput(N_("send the file in the multipart form field 'file'"))
    for storage in files:
        if not (storage.filename or "").strip():
            raise InvalidInput(N_("every uploaded file needs a file name"))
    return files


@bp.post("/collections/<int:cid>/upload")
@upload_endpoint("cid")
@console
def upload(cid: int) -> Response | Redirect:
    """One file per request from the page's script (a zip expands into its members);
    the plain form fallback may send several and gets a redirect."""
    p = current_principal()
    svc = services()
    uploads: list[dict[str, object]] = []
    for storage in _upload_files():
        sent = storage.filename or ""
        for item in svc.library.upload(p, cid, storage.stream, sent, ip=ip()):
            # ``source`` tells the script which of its rows an entry belongs to (a zip's
            # members are named "<archive>/<member>").
            uploads.append({**asdict(item), "source": display_name(sent)})
    if wants_json():
        resp = jsonify({"uploads": uploads})
        resp.status_code = 202
        return resp
    failed = sum(1 for u in uploads if u["status"] == DocStatus.FAILED)
    flash(
        _(
            "%(accepted)s accepted, %(refused)s refused; processing runs in the background.",
            accepted=ngettext("%(num)s file", "%(num)s files", len(uploads)),
            refused=failed,
        )
    )
    return redirect(url_for("admin.collection", cid=cid))


@bp.get("/collections/<int:cid>/documents.json")
@console
def documents_json(cid: int) -> Response:
    docs = services().library.documents(current_principal(), cid, _status_filter())
    return jsonify([Document.of(d).model_dump(mode="json") for d in docs])


def _doc_ids_of(p: Principal, cid: int, ids: list[str]) -> list[str]:
    """The ids, each checked to be a document of this collection (the URL names one)."""
    if not ids:
        raise InvalidInput(N_("choose at least one document (field 'doc_id')"))
    lib = services().library
    for doc_id in ids:
        if len(doc_id) > 64 or lib.document(p, doc_id).collection_id != cid:
            raise NotFound(
                N_("no document %(id)s in collection %(cid)s", id=repr(doc_id[:64]), cid=cid)
            )
    return ids


def _back_to_collection(cid: int, message: str) -> Redirect:
    status = request.form.get("status") or None
    values: dict[str, Any] = {"cid": cid}
    if status in DocStatus.ALL:
        values["status"] = status  # keep the table filter the user was looking at
    return done(message, "admin.collection", **values)


@bp.post("/collections/<int:cid>/documents/delete")
@console
def delete_documents(cid: int) -> Redirect:
    p = current_principal()
    ids = _doc_ids_of(p, cid, request.form.getlist("doc_id"))
    names = services().library.delete_documents(p, ids, ip=ip())
    return _back_to_collection(cid, with_names(_("Deleted %(names)s."), names=", ".join(names)))


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
        ids = [d.id for d in svc.library.documents(p, cid, DocStatus.FAILED) if d.retryable]
    if not ids:
        return _back_to_collection(cid, _("No failed documents to retry."))
    n = svc.library.retry(p, ids, ip=ip())
    said = ngettext("%(num)s document queued again.", "%(num)s documents queued again.", n)
    return _back_to_collection(cid, said)


@bp.post("/collections/<int:cid>/reindex")
@console
def reindex(cid: int) -> Redirect:
    services().library.reindex(current_principal(), cid, ip=ip())
    return _back_to_collection(cid, _("Re-indexing started; search uses the old index until then."))


@bp.post("/collections/<int:cid>/summarize")
@console
def summarize(cid: int) -> Redirect:
    """Summarize one document (``doc_id``) or, without one, the whole collection; the
    job is then followed on the portal's Summaries page."""
    from web.blueprints.api.summaries import summary_jobs

    p = current_principal()
    ids = request.form.getlist("doc_id")
    doc_id = _doc_ids_of(p, cid, ids[:1])[0] if ids else None
    jobs = summary_jobs()
    if doc_id is not None:
        job = jobs.submit(p, document_id=doc_id, ip=ip())
    else:
        job = jobs.submit(p, collection_id=cid, ip=ip())
    said = with_names(_("Summary of %(name)s queued."), name=job.name)
    return done(said, "portal.summaries", job=job.id)


# --- grants (admins change them; editors who may write only see them) -------------------------


@dataclass(frozen=True)
class _Grantee:
    """Who a grant is for, named from the collection's grants ("#7" when not among them)."""

    is_user: bool
    name: str

    @classmethod
    def of(cls, grants: list[GrantView], user_id: int | None, group_id: int | None) -> _Grantee:
        for gv in grants:
            if user_id is not None and gv.user_id == user_id:
                return cls(True, gv.username or f"#{user_id}")
            if group_id is not None and gv.group_id == group_id:
                return cls(False, gv.group_name or f"#{group_id}")
        return cls(user_id is not None, f"#{user_id if user_id is not None else group_id}")

    @property
    def label(self) -> str:
        """For the audit log, which stays English: "user alice"."""
        return f"{'user' if self.is_user else 'group'} {self.name}"

    def said(self) -> Markup:
        """For a flash message, in the reader's language."""
        phrase = _("user %(name)s") if self.is_user else _("group %(name)s")
        return with_names(phrase, name=self.name)


@bp.post("/collections/<int:cid>/grants")
@admin_required
def grant(cid: int) -> Redirect:
    p = current_principal()
    svc = services()
    user_id, group_id = form_principal()
    permission = form_text("permission", max_len=16)
    view = svc.library.collection(p, cid)
    svc.access.grant(cid, permission, user_id=user_id, group_id=group_id)
    grantee = _Grantee.of(svc.access.grants(cid), user_id, group_id)
    details = {
        "user_id": user_id,
        "group_id": group_id,
        "who": grantee.label,
        "permission": permission,
    }
    svc.audit.record(GRANT, actor=p, target=view.name, details=details, ip=ip())
    if permission == "write":
        said = _("%(who)s may now change %(collection)s.")
    else:
        said = _("%(who)s may now read %(collection)s.")
    return done(
        with_names(said, who=grantee.said(), collection=view.name), "admin.collection", cid=cid
    )


@bp.post("/collections/<int:cid>/grants/revoke")
@admin_required
def revoke(cid: int) -> Redirect:
    p = current_principal()
    svc = services()
    user_id, group_id = form_principal()
    view = svc.library.collection(p, cid)
    grantee = _Grantee.of(svc.access.grants(cid), user_id, group_id)
    svc.access.revoke(cid, user_id=user_id, group_id=group_id)
    details = {"user_id": user_id, "group_id": group_id, "who": grantee.label}
    svc.audit.record(REVOKE, actor=p, target=view.name, details=details, ip=ip())
    said = with_names(
        _("Access of %(who)s to %(collection)s revoked."), who=grantee.said(), collection=view.name
    )
    return done(said, "admin.collection", cid=cid)


# --- synced folders (admins only: a folder is read with the server's own rights) ----------


@bp.post("/collections/<int:cid>/sync")
@admin_required
def add_synced_folder(cid: int) -> Redirect:
    svc, p = services(), current_principal()
    view = svc.library.collection(p, cid)
    source = svc.sync_sources.add(
        form_text("path", max_len=4096),
        view.name,
        interval_s=parse_interval(form_text("interval", max_len=20)),
        include=_patterns("include"),
        exclude=_patterns("exclude") or None,
    )
    svc.audit.record("sync_add", actor=p, target=view.name, details={"path": source.path}, ip=ip())
    _scan_soon(source.id)
    said = with_names(_("Folder %(path)s is synced into this collection."), path=source.path)
    return done(said, "admin.collection", cid=cid)


@bp.post("/sync/<int:sid>/run")
@admin_required
def run_synced_folder(sid: int) -> Redirect:
    source = services().sync_sources.get(sid)
    services().audit.record(
        "sync_run",
        actor=current_principal(),
        target=source.collection,
        details={"path": source.path},
        ip=ip(),
    )
    _scan_soon(sid)
    said = with_names(_("Folder %(path)s is being scanned."), path=source.path)
    return done(said, "admin.collection", cid=source.collection_id)


@bp.post("/sync/<int:sid>/remove")
@admin_required
def remove_synced_folder(sid: int) -> Redirect:
    source = services().sync_sources.remove(sid)
    services().audit.record(
        "sync_remove",
        actor=current_principal(),
        target=source.collection,
        details={"path": source.path},
        ip=ip(),
    )
    said = with_names(
        _("Folder %(path)s is no longer synced; its documents stay."), path=source.path
    )
    return done(said, "admin.collection", cid=source.collection_id)


def _patterns(name: str) -> list[str]:
    """Comma- or newline-separated glob patterns of a form field."""
    raw = request.form.get(name) or ""
    return [part.strip() for part in re.split(r"[,\n]", raw) if part.strip()][:MAX_GLOBS]


def _audit_sync(action: str, collection: str, path: str) -> None:
    services().audit.record(
        action, actor=current_principal(), target=collection, details={"path": path}, ip=ip()
    )


def _scan_soon(source_id: int) -> None:
    queue = services().ingest
    if queue is not None:
        queue.sync_now(source_id)
