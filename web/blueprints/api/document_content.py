"""What the document viewer reads: a document's page texts and its stored original.

    GET /api/v1/documents/<id>/pages -> {"document": {...}, "pages": [{"number", "text"}]}
    GET /api/v1/documents/<id>/file  -> the original bytes

A document the caller may not read is a 404, exactly like one that does not exist.

Originals are files anyone with write access uploaded, so they are untrusted content
served from our own origin: only PDFs are shown inline (pdf.js and the browser's PDF
viewer do not run page scripts in our origin); everything else is an attachment of type
``application/octet-stream`` under ``Content-Security-Policy: sandbox``, so an uploaded
HTML or SVG file can never run script as the portal, even if a browser renders it.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from flask import Response, send_file

from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.blueprints.api.documents import TAG
from web.contracts.api import Document, DocumentPages, Page
from web.contracts.operation import Reply, operation
from web.extensions import services

PDF_TYPE = "pdf"
ORIGINAL = Reply(
    description=(
        "PDFs inline as application/pdf; every other type as an application/octet-stream attachment"
    ),
    media={"application/pdf": None, "application/octet-stream": None},
)


@bp.get("/documents/<doc_id>/pages")
@login_required
@operation(
    "The extracted text of every page (citation char spans index into it)",
    TAG,
    {200: DocumentPages},
    errors=(404,),
)
def document_pages(doc_id: str) -> Response:
    p = current_principal()
    library = services().library
    doc = library.document(p, doc_id)
    pages = library.pages(p, doc_id)
    return DocumentPages(
        document=Document.of(doc),
        pages=[Page(number=pg.number, text=pg.text, boxes=pg.boxes) for pg in pages],
    ).reply()


@bp.get("/documents/<doc_id>/file")
@login_required
@operation("The original file as uploaded", TAG, {200: ORIGINAL}, errors=(404,))
def document_file(doc_id: str) -> Response:
    original = services().library.original(current_principal(), doc_id)
    is_pdf = original.detected_type == PDF_TYPE
    resp = send_file(
        original.path,
        mimetype="application/pdf" if is_pdf else "application/octet-stream",
        as_attachment=not is_pdf,
        # werkzeug adds the RFC 6266 filename*=UTF-8''... form for non-ASCII names.
        download_name=download_name(original.name),
        conditional=True,
    )
    if not is_pdf:
        resp.headers["Content-Security-Policy"] = "sandbox"
    # Revalidate every time: access is checked per request, a revoked grant must count.
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


def download_name(name: str) -> str:
    """The file name without the folders it was uploaded under (``docs/a.pdf`` -> ``a.pdf``)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    # Control characters have no place in a header value.
    cleaned = "".join(ch for ch in base if ch.isprintable())
    return cleaned or "document"
