"""Collections and their documents: list, create, rename, delete, upload, reindex.

Thin routes over ``qa.library.service.LibraryService``, which checks the caller's grants (a
collection the caller may not read answers 404, one they may only read answers 403 on a
change) and writes the audit log.
"""

from __future__ import annotations

from flask import Response, jsonify, request, url_for
from werkzeug.datastructures import FileStorage

from qa.errors import InvalidInput
from qa.library.service import document_dict
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.extensions import services
from web.requests import client_ip, field_str, json_body

#: multipart field names that carry files ("files" is what many HTML forms use)
FILE_FIELDS = ("file", "files")


@bp.get("/collections")
@login_required
def list_collections() -> Response:
    views = services().library.collections(current_principal())
    return jsonify({"collections": [v.to_dict() for v in views]})


@bp.post("/collections")
@login_required
def create_collection() -> tuple[Response, int, dict[str, str]]:
    name = field_str(json_body(), "name", max_len=200) or ""
    svc, p = services(), current_principal()
    coll_id = svc.library.create_collection(p, name, ip=client_ip())
    location = url_for("api.get_collection", collection_id=coll_id)
    return jsonify(svc.library.collection(p, coll_id).to_dict()), 201, {"Location": location}


@bp.get("/collections/<int:collection_id>")
@login_required
def get_collection(collection_id: int) -> Response:
    return jsonify(services().library.collection(current_principal(), collection_id).to_dict())


@bp.patch("/collections/<int:collection_id>")
@login_required
def rename_collection(collection_id: int) -> Response:
    name = field_str(json_body(), "name", max_len=200) or ""
    svc, p = services(), current_principal()
    svc.library.rename_collection(p, collection_id, name, ip=client_ip())
    return jsonify(svc.library.collection(p, collection_id).to_dict())


@bp.delete("/collections/<int:collection_id>")
@login_required
def delete_collection(collection_id: int) -> Response:
    svc = services()
    n = svc.library.delete_collection(current_principal(), collection_id, ip=client_ip())
    return jsonify({"deleted": True, "id": collection_id, "documents": n})


@bp.get("/collections/<int:collection_id>/documents")
@login_required
def list_documents(collection_id: int) -> Response:
    status = request.args.get("status") or None
    docs = services().library.documents(current_principal(), collection_id, status)
    return jsonify({"documents": [document_dict(d) for d in docs]})


@bp.post("/collections/<int:collection_id>/documents")
@login_required
def upload_documents(collection_id: int) -> tuple[Response, int]:
    files = _uploaded_files()
    svc, p, ip = services(), current_principal(), client_ip()
    uploads: list[dict[str, object]] = []
    for f in files:
        for upload in svc.library.upload(p, collection_id, f.stream, f.filename or "", ip=ip):
            uploads.append(upload.to_dict())
    # 202: the files are stored and queued; parsing and indexing happen in the background.
    return jsonify({"uploads": uploads}), 202


@bp.post("/collections/<int:collection_id>/reindex")
@login_required
def reindex_collection(collection_id: int) -> tuple[Response, int]:
    services().library.reindex(current_principal(), collection_id, ip=client_ip())
    return jsonify({"id": collection_id, "status": "queued"}), 202


def _uploaded_files() -> list[FileStorage]:
    if request.mimetype != "multipart/form-data":
        raise InvalidInput("send the files as multipart/form-data, in parts named 'file'")
    files = [f for name in FILE_FIELDS for f in request.files.getlist(name)]
    if not files:
        raise InvalidInput("no file part: send one or more parts named 'file'")
    for f in files:
        if not f.filename:
            raise InvalidInput("every file part needs a filename")
    return files
