"""One document: its status (and failure reason), deleting it, retrying a failed one.

A document in a collection the caller may not read answers 404, like a missing one.
"""

from __future__ import annotations

from flask import Response

from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.contracts.api import Document, DocumentDeleted, Retried
from web.contracts.operation import Reply, operation
from web.extensions import services
from web.requests import client_ip

TAG = "documents"


@bp.get("/documents/<doc_id>")
@login_required
@operation(
    "A document's status; 'error' holds the reason when it failed",
    TAG,
    {200: Document},
    errors=(404,),
)
def get_document(doc_id: str) -> Response:
    return Document.of(services().library.document(current_principal(), doc_id)).reply()


@bp.delete("/documents/<doc_id>")
@login_required
@operation("Delete a document (write permission)", TAG, {200: DocumentDeleted}, errors=(403, 404))
def delete_document(doc_id: str) -> Response:
    services().library.delete_documents(current_principal(), [doc_id], ip=client_ip())
    return DocumentDeleted(deleted=True, id=doc_id).reply()


@bp.post("/documents/<doc_id>/retry")
@login_required
@operation(
    "Process a failed document again (write permission)",
    TAG,
    {202: Reply(Retried, "Queued")},
    errors=(403, 404, 503),
    description="queued is 0 when a retry cannot help: the document is indexed, or its"
    " failure is the file's own (retryable false: a password, an unsupported type, no text)",
)
def retry_document(doc_id: str) -> tuple[Response, int]:
    n = services().library.retry(current_principal(), [doc_id], ip=client_ip())
    # An indexed document, or one no retry can fix: queued is 0 and nothing changes.
    return Retried(id=doc_id, queued=n).reply(202), 202
