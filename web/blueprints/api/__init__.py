"""The JSON REST API under ``/api/v1`` (API token or signed-in session).

One blueprint; its routes live in the modules below, grouped by resource.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Route modules register on ``bp`` when imported.
from web.blueprints.api import (  # noqa: E402, F401
    ask,
    chats,
    collections,
    document_content,
    documents,
    me,
    openapi,
    summaries,
)
