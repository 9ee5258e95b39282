"""Collections and their documents: list, create, rename, delete, upload, reindex.

Thin routes over ``qa.library.service.LibraryService``, which checks the caller's grants (a
collection the caller may not read answers 404, one they may only read answers 403 on a
change) and writes the audit log.
"""

from __future__ import annotations

from flask import Response, request, url_for
from werkzeug.datastructures import FileStorage

from qa.errors import InvalidInput
from qa.messages import N_
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.bodies import upload_endpoint
from web.contracts.api import Collection as CollectionShape
from web.contracts.api import (
    CollectionDeleted,
    CollectionList,
    CollectionName,
    Document,
    DocumentFilter,
    DocumentList,
    Queued,
    Upload,
    UploadList,
)
from web.contracts.operation import Reply, operation
from web.extensions import services
from web.requests import client_ip

#: multipart field names that carry files ("files" is what many HTML forms use)
FILE_FIELDS = ("file", "files")
TAG = "collections"
_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
#: the upload form as the description shows it (files are not a JSON model)
UPLOAD_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {name: {"type": "array", "items": _BINARY} for name in FILE_FIELDS},
            "description": "one or more parts named 'file' (or 'files')",
        }
    }
}


@bp.get("/collections")
@login_required
@operation("Collections the caller may read", TAG, {200: CollectionList})
def list_collections() -> Response:
    views = services().library.collections(current_principal())
    return CollectionList(collections=[CollectionShape.of_fields(v) for v in views]).reply()


@bp.post("/collections")
@login_required
@operation(
    "Create a collection (admins and editors)",
    TAG,
    {201: Reply(CollectionShape, "Created", headers={"Location": "the new collection"})},
    errors=(400, 403, 409, 413),
    body=CollectionName,
)
def create_collection(body: CollectionName) -> tuple[Response, int, dict[str, str]]:
    svc, p = services(), current_principal()
    coll_id = svc.library.create_collection(p, body.name, ip=client_ip())
    location = url_for("api.get_collection", collection_id=coll_id)
    created = CollectionShape.of_fields(svc.library.collection(p, coll_id))
    return created.reply(201), 201, {"Location": location}


@bp.get("/collections/<int:collection_id>")
@login_required
@operation("One collection", TAG, {200: CollectionShape}, errors=(404,))
def get_collection(collection_id: int) -> Response:
    view = services().library.collection(current_principal(), collection_id)
    return CollectionShape.of_fields(view).reply()


@bp.patch("/collections/<int:collection_id>")
@login_required
@operation(
    "Rename a collection (write permission)",
    TAG,
    {200: CollectionShape},
    errors=(400, 403, 404, 409, 413),
    body=CollectionName,
)
def rename_collection(collection_id: int, body: CollectionName) -> Response:
    svc, p = services(), current_principal()
    svc.library.rename_collection(p, collection_id, body.name, ip=client_ip())
    return CollectionShape.of_fields(svc.library.collection(p, collection_id)).reply()


@bp.delete("/collections/<int:collection_id>")
@login_required
@operation(
    "Delete a collection with its documents and indexes (write permission)",
    TAG,
    {200: CollectionDeleted},
    errors=(403, 404),
)
def delete_collection(collection_id: int) -> Response:
    svc = services()
    n = svc.library.delete_collection(current_principal(), collection_id, ip=client_ip())
    return CollectionDeleted(deleted=True, id=collection_id, documents=n).reply()


@bp.get("/collections/<int:collection_id>/documents")
@login_required
@operation(
    "Documents of a collection", TAG, {200: DocumentList}, errors=(400, 404), query=DocumentFilter
)
def list_documents(collection_id: int, query: DocumentFilter) -> Response:
    docs = services().library.documents(current_principal(), collection_id, query.status)
    return DocumentList(documents=[Document.of(d) for d in docs]).reply()


@bp.post("/collections/<int:collection_id>/documents")
@upload_endpoint("collection_id")
@login_required
@operation(
    "Upload files (write permission); zip archives expand into their members",
    TAG,
    {202: Reply(UploadList, "Stored and queued; poll the documents for their status")},
    errors=(400, 403, 404, 413, 503),
    raw_body=UPLOAD_FORM,
)
def upload_documents(collection_id: int) -> tuple[Response, int]:
    files = _uploaded_files()
    svc, p, ip = services(), current_principal(), client_ip()
    uploads = [
        Upload.of(upload)
        for f in files
        for upload in svc.library.upload(p, collection_id, f.stream, f.filename or "", ip=ip)
    ]
    # 202: the files are stored and queued; parsing and indexing happen in the background.
    return UploadList(uploads=uploads).reply(202), 202


@bp.post("/collections/<int:collection_id>/reindex")
@login_required
@operation(
    "Rebuild the collection's indexes from the database (write permission)",
    TAG,
    {202: Reply(Queued, "Queued")},
    errors=(403, 404, 503),
)
def reindex_collection(collection_id: int) -> tuple[Response, int]:
    services().library.reindex(current_principal(), collection_id, ip=client_ip())
    return Queued(id=collection_id).reply(202), 202


def _uploaded_files() -> list[FileStorage]:
    if request.mimetype != "multipart/form-data":
        raise InvalidInput(N_("send the files as multipart/form-data, in parts named 'file'"))
    files = [f for name in FILE_FIELDS for f in request.files.getlist(name)]
    if not files:
        raise InvalidInput(N_("no file part: send one or more parts named 'file'"))
    for f in files:
        if not f.filename:
            raise InvalidInput(N_("every file part needs a filename"))
    return files
