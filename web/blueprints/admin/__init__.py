"""The admin console under ``/admin``: collections, uploads, access, users, groups, API
tokens, settings, answer feedback and the audit log.

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

from flask import Blueprint, g
from werkzeug.wrappers import Response as WzResponse

from qa.errors import PermissionDenied
from qa.messages import N_
from web.auth import roles_required

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


@bp.before_request
def _browser_sessions_only() -> None:
    if g.get("auth_kind") == "token":
        raise PermissionDenied(N_("the admin console needs a signed-in browser session"))


# Route modules register on ``bp`` when imported.
from web.blueprints.admin import (  # noqa: E402, F401
    accounts,
    collections,
    feedback,
    forms,
    settings,
)
