"""The OpenAPI 3.1 description of docqa's HTTP API, served at ``/api/v1/openapi.json``.

Written as Python data, not generated from the routes: the description says what clients
may rely on. ``tests/web/test_openapi.py`` compares it with ``app.url_map`` both ways, so a
route added, removed or renamed without its description here fails the tests.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from qa.limits import (
    MAX_ANSWER_TOKENS,
    MAX_QUESTION_CHARS,
    MAX_SOURCES,
    MAX_SUMMARY_STATEMENTS,
    MAX_SYSTEM_PROMPT_CHARS,
)

Schema = dict[str, Any]

JSON = "application/json"
SSE = "text/event-stream"


def _version() -> str:
    try:
        return version("docqa")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


# -- small builders -----------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def nullable(type_: str, **extra: Any) -> Schema:
    return {"type": [type_, "null"], **extra}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
BINARY: Schema = {"type": "string", "contentMediaType": "application/octet-stream"}


def json_body(schema: Schema, description: str | None = None) -> Schema:
    body: Schema = {"required": True, "content": {JSON: {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def ok(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Schema]:
    """Shared error responses; 401 and 429 apply to every authenticated operation."""
    return {str(s): {"$ref": f"#/components/responses/{ERROR_RESPONSES[s][0]}"} for s in statuses}


def op(
    summary: str,
    tag: str,
    responses: dict[str, Schema],
    *,
    body: Schema | None = None,
    params: list[Schema] | None = None,
    public: bool = False,
    description: str | None = None,
) -> Schema:
    operation: Schema = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = body
    if params:
        operation["parameters"] = params
    if public:
        operation["security"] = []
    else:
        operation["responses"].update(errors(401, 429))
    return operation


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


COLLECTION_ID = path_param("collection_id", INT, "collection id")
DOC_ID = path_param("doc_id", STR, "document id (a content hash)")
CHAT_ID = path_param("chat_id", STR, "chat id")
JOB_ID = path_param("job_id", STR, "summary job id")


# -- errors ---------------------------------------------------------------------------------

#: status -> (component name, description)
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON, a missing field or a value of the wrong type or range"),
    401: ("Unauthenticated", "No session and no valid API token"),
    403: ("Forbidden", "The role or grant does not allow this, or the CSRF token is missing"),
    404: ("NotFound", "No such resource, or one the caller may not see"),
    409: ("Conflict", "The name is taken"),
    413: ("TooLarge", "The body is over its cap (2 MiB for JSON, max_upload_mb for uploads)"),
    429: ("RateLimited", "Too many requests; retry after Retry-After seconds"),
    503: ("Unavailable", "Model queue full or a needed part not running; see Retry-After"),
}

_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": INT},
}


def error_components() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        response = ok(ref("Error"), description)
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        out[name] = response
    return out


ERROR_SCHEMA = obj(
    {
        "error": obj(
            {
                "code": {
                    **STR,
                    "description": "stable machine-readable code, e.g. not_found, invalid_input",
                },
                "message": {**STR, "description": "what went wrong, for people"},
                "type": {
                    **STR,
                    "description": "OpenAI-style error type; only on /v1 endpoints",
                    "enum": [
                        "invalid_request_error",
                        "authentication_error",
                        "permission_error",
                        "rate_limit_error",
                        "server_error",
                    ],
                },
            },
            ["code", "message"],
        )
    },
    ["error"],
)


# -- schemas --------------------------------------------------------------------------------

DOC_STATUS: Schema = {**STR, "enum": ["queued", "processing", "indexed", "failed"]}
CHUNK_ID: Schema = {
    **INT,
    "description": "64-bit: beyond JavaScript's exact integer range, compare as text",
}
ROLE: Schema = {**STR, "enum": ["admin", "editor", "reader"]}
CHAT_ENVELOPE: Schema = obj({"chat": ref("Chat")}, ["chat"])

SOURCE_REF_FIELDS: dict[str, Schema] = {
    "n": {**INT, "description": "the number [n] used in the answer"},
    "document_id": STR,
    "document_name": STR,
    "title": nullable("string"),
    "collection": STR,
    "page_start": INT,
    "page_end": INT,
    "char_start": {**INT, "description": "offset of the passage in the page text of page_start"},
    "char_end": INT,
}

SCHEMAS: dict[str, Schema] = {
    "Error": ERROR_SCHEMA,
    "Collection": obj(
        {
            "id": INT,
            "name": STR,
            "documents": INT,
            "chunks": INT,
            "permission": {**STR, "enum": ["read", "write"], "description": "the caller's"},
        },
        ["id", "name", "documents", "chunks", "permission"],
    ),
    "CollectionName": obj(
        {
            "name": {
                **STR,
                "description": "1-100 letters, digits, spaces, '.', '-' or '_'",
                "maxLength": 100,
            }
        },
        ["name"],
    ),
    "Document": obj(
        {
            "id": STR,
            "collection_id": INT,
            "name": {**STR, "description": "the uploaded file name"},
            "title": nullable("string"),
            "type": nullable("string", description="detected file type"),
            "size_bytes": nullable("integer"),
            "status": DOC_STATUS,
            "error": nullable("string", description="why processing failed (status failed)"),
            "pages": nullable("integer"),
            "chunks": nullable("integer"),
            "attempts": INT,
            "created_at": nullable("string", format="date-time"),
            "updated_at": nullable("string", format="date-time"),
        },
        ["id", "collection_id", "name", "status", "error"],
    ),
    "Upload": obj(
        {
            "name": STR,
            "document_id": nullable("string", description="null when refused before storing"),
            "status": STR,
            "created": {**BOOL, "description": "false: the same bytes were there already"},
            "error": nullable("string"),
        },
        ["name", "document_id", "status", "created", "error"],
    ),
    "Source": obj(
        {
            **SOURCE_REF_FIELDS,
            "chunk_id": CHUNK_ID,
            "heading_path": array(STR),
            "score": NUM,
            "text": {**STR, "description": "the passage given to the model"},
        },
        ["n", "document_id", "document_name", "page_start", "page_end"],
    ),
    "SourceRef": obj(
        SOURCE_REF_FIELDS,
        ["n", "document_id", "document_name", "page_start", "page_end", "char_start", "char_end"],
        description="a source without its passage text",
    ),
    "Citation": obj(
        {
            "n": INT,
            "chunk_id": CHUNK_ID,
            "document_id": STR,
            "document_name": STR,
            "page_start": INT,
            "page_end": INT,
            "char_start": INT,
            "char_end": INT,
        },
        ["n", "document_id", "document_name", "page_start", "page_end"],
        description="a valid [n] of the answer, mapped to its source",
    ),
    "Highlight": obj(
        {"n": INT, "document_id": STR, "page": INT, "char_start": INT, "char_end": INT},
        ["n", "document_id", "page", "char_start", "char_end"],
        description="the exact span of a quoted sentence (extractive answers)",
    ),
    "AskOptions": obj(
        {
            "k": {
                **INT,
                "minimum": 1,
                "maximum": MAX_SOURCES,
                "description": "passages to retrieve",
            },
            "temperature": {**NUM, "minimum": 0, "maximum": 2},
            "top_p": {**NUM, "exclusiveMinimum": 0, "maximum": 1},
            "max_tokens": {**INT, "minimum": 1, "maximum": MAX_ANSWER_TOKENS},
            "system_prompt": {**STR, "maxLength": MAX_SYSTEM_PROMPT_CHARS},
        }
    ),
    "AskRequest": {
        "allOf": [
            ref("AskOptions"),
            obj(
                {
                    "question": {**STR, "maxLength": MAX_QUESTION_CHARS},
                    "collection_ids": {
                        **array(INT),
                        "description": "empty or absent: every collection the caller may read",
                    },
                    "chat_id": {
                        **STR,
                        "maxLength": 64,
                        "description": "store the turn in this chat; its history is used",
                    },
                    "stream": {**BOOL, "description": "answer as server-sent events"},
                },
                ["question"],
            ),
        ]
    },
    "AskResponse": obj(
        {
            "answer": {**STR, "description": "validated answer text with [n] markers"},
            "sources": array(ref("Source")),
            "citations": array(ref("Citation")),
            "invalid": {**INT, "description": "citation markers that named no source"},
            "highlights": array(ref("Highlight")),
            "mode": {**STR, "enum": ["extractive", "generative"]},
            "chat_id": nullable("string"),
            "done": {
                "type": "object",
                "description": "finish_reason and timings (retrieval_ms, tokens_per_s, ...)",
            },
        },
        ["answer", "sources", "citations", "mode"],
    ),
    "AskEvent": {
        "description": (
            "One server-sent event: 'event: <type>' and 'data: <this object as JSON>'. "
            "Order: sources, queued*, token*, citations, done; or error instead of the rest."
        ),
        "oneOf": [
            obj({"type": {"const": "sources"}, "sources": array(ref("Source"))}, ["type"]),
            obj({"type": {"const": "queued"}, "position": INT}, ["type", "position"]),
            obj({"type": {"const": "token"}, "text": STR}, ["type", "text"]),
            obj(
                {
                    "type": {"const": "citations"},
                    "citations": array(ref("Citation")),
                    "invalid": INT,
                    "text": STR,
                    "highlights": array(ref("Highlight")),
                },
                ["type", "citations", "text"],
            ),
            obj(
                {
                    "type": {"const": "done"},
                    "mode": STR,
                    "finish_reason": STR,
                    "retrieval_ms": NUM,
                    "time_to_first_token_ms": NUM,
                    "tokens_per_s": NUM,
                },
                ["type", "mode"],
            ),
            obj({"type": {"const": "error"}, "code": STR, "message": STR}, ["type", "code"]),
        ],
    },
    "Chat": obj(
        {
            "id": STR,
            "title": STR,
            "collection_ids": array(INT),
            "created_at": nullable("string", format="date-time"),
            "updated_at": nullable("string", format="date-time"),
        },
        ["id", "title", "collection_ids"],
    ),
    "ChatMessage": obj(
        {
            "id": INT,
            "role": {**STR, "enum": ["user", "assistant"]},
            "content": STR,
            "meta": {
                "type": "object",
                "description": "sources, citations, highlights, mode, finish_reason",
            },
            "created_at": nullable("string", format="date-time"),
        },
        ["id", "role", "content", "meta"],
    ),
    "ChatCreate": obj(
        {
            "title": {**STR, "maxLength": 200},
            "collection_ids": {
                **array(INT),
                "description": "collections to ask in (each must be readable)",
            },
        },
    ),
    "Preferences": obj(
        {
            "system_prompt": nullable("string", maxLength=MAX_SYSTEM_PROMPT_CHARS),
            "temperature": nullable("number", minimum=0, maximum=2),
            "top_p": nullable("number", maximum=1),
            "max_tokens": nullable("integer", minimum=1),
            "theme": nullable("string", enum=["dark", "light", None]),
        },
        description="only the keys the user set; null resets a key to the default",
    ),
    "Me": obj(
        {
            "user": obj(
                {
                    "id": INT,
                    "username": STR,
                    "display_name": nullable("string"),
                    "role": ROLE,
                },
                ["id", "username", "role"],
            ),
            "role": ROLE,
            "preferences": ref("Preferences"),
            "defaults": {
                **ref("Preferences"),
                "description": "what each unset preference means",
            },
            "collections": array(ref("Collection")),
            "answer_mode": {**STR, "enum": ["extractive", "generative"]},
        },
        ["user", "role", "preferences", "collections", "answer_mode"],
    ),
    "Page": obj({"number": INT, "text": STR}, ["number", "text"]),
    # -- summaries ------------------------------------------------------------------------
    "SummaryRequest": obj(
        {
            "document_id": {**STR, "maxLength": 64, "description": "summarize this document"},
            "collection_id": {
                **INT,
                "minimum": 1,
                "description": "summarize this collection (admins and editors)",
            },
            "max_statements": {
                **INT,
                "minimum": 1,
                "maximum": MAX_SUMMARY_STATEMENTS,
                "default": 10,
            },
        },
        description="exactly one of document_id and collection_id",
    ),
    "SummaryStatement": obj(
        {
            "text": STR,
            "document_id": STR,
            "document_name": STR,
            "pages": {**array(INT), "minItems": 1, "description": "the pages it comes from"},
            "span": obj(
                {"page": INT, "char_start": INT, "char_end": INT},
                ["page", "char_start", "char_end"],
                description="extractive statements: the quoted sentence in the page text",
            ),
        },
        ["text", "document_id", "document_name", "pages"],
    ),
    "SummaryResult": obj(
        {
            "kind": {**STR, "enum": ["document", "collection"]},
            "title": STR,
            "model": {**STR, "enum": ["extractive", "generative"]},
            "label": {**STR, "description": "how the summary was made, for its readers"},
            "statements": {
                **array(ref("SummaryStatement")),
                "description": "the summary (a collection's: the synthesis across documents)",
            },
            "markdown": STR,
            "document_id": STR,
            "document_name": STR,
            "collection_id": INT,
            "collection_name": STR,
            "windows": array(obj({"pages": array(INT)}, ["pages"])),
            "documents": {
                **array(
                    obj(
                        {
                            "document_id": STR,
                            "document_name": STR,
                            "statements": array(ref("SummaryStatement")),
                        },
                        ["document_id", "document_name", "statements"],
                    )
                ),
                "description": "a collection summary's per-document summaries",
            },
            "skipped": array(
                obj(
                    {"document_id": STR, "document_name": STR, "status": DOC_STATUS},
                    ["document_id", "document_name", "status"],
                )
            ),
            "timings": {"type": "object", "description": "total_s, generations, queue_wait_s"},
        },
        ["kind", "title", "model", "label", "statements", "markdown", "timings"],
    ),
    "SummaryJob": obj(
        {
            "id": STR,
            "target": {**STR, "enum": ["document", "collection"]},
            "name": {**STR, "description": "the document's or collection's name"},
            "document_id": nullable("string"),
            "collection_id": nullable("integer"),
            "status": {**STR, "enum": ["queued", "running", "done", "failed", "cancelled"]},
            "progress": {**NUM, "minimum": 0, "maximum": 1},
            "error": nullable("string", description="why it failed or was cancelled"),
            "cancel_requested": BOOL,
            "submitted_by": nullable("string"),
            "options": {"type": "object"},
            "created_at": nullable("string", format="date-time"),
            "updated_at": nullable("string", format="date-time"),
            "result": {
                "oneOf": [ref("SummaryResult"), {"type": "null"}],
                "description": "only on GET /summaries/{job_id}; null until done",
            },
        },
        ["id", "target", "name", "status", "progress", "error", "cancel_requested"],
    ),
    # -- OpenAI-compatible --------------------------------------------------------------
    "Model": obj(
        {
            "id": {**STR, "description": "'docqa' or 'docqa/<collection name>'"},
            "object": {"const": "model"},
            "created": INT,
            "owned_by": {"const": "docqa"},
        },
        ["id", "object", "created", "owned_by"],
    ),
    "ModelList": obj(
        {"object": {"const": "list"}, "data": array(ref("Model"))}, ["object", "data"]
    ),
    "ChatCompletionMessage": obj(
        {
            "role": {**STR, "enum": ["system", "developer", "user", "assistant"]},
            "content": {
                "description": "text, or a list of {type: text, text} parts",
                "oneOf": [
                    STR,
                    {"type": "null"},
                    array(obj({"type": {"const": "text"}, "text": STR}, ["type", "text"])),
                ],
            },
        },
        ["role"],
    ),
    "ChatCompletionRequest": obj(
        {
            "model": {**STR, "description": "a model id from GET /v1/models"},
            "messages": {
                **array(ref("ChatCompletionMessage"), minItems=1, maxItems=500),
                "description": (
                    "the last message must be the user's question; earlier user and "
                    "assistant messages are the history, the first system message the "
                    "system prompt"
                ),
            },
            "stream": BOOL,
            "stream_options": obj({"include_usage": BOOL}),
            "temperature": {**NUM, "minimum": 0, "maximum": 2},
            "top_p": {**NUM, "exclusiveMinimum": 0, "maximum": 1},
            "max_tokens": {**INT, "minimum": 1, "maximum": MAX_ANSWER_TOKENS},
            "max_completion_tokens": {**INT, "description": "same as max_tokens"},
            "seed": INT,
            "n": {"const": 1},
        },
        ["model", "messages"],
        description="other OpenAI fields are accepted and ignored",
    ),
    "Usage": obj(
        {"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT},
        ["prompt_tokens", "completion_tokens", "total_tokens"],
    ),
    "ChatCompletion": obj(
        {
            "id": {**STR, "pattern": "^chatcmpl-"},
            "object": {"const": "chat.completion"},
            "created": INT,
            "model": STR,
            "choices": array(
                obj(
                    {
                        "index": INT,
                        "message": obj(
                            {"role": {"const": "assistant"}, "content": STR},
                            ["role", "content"],
                        ),
                        "finish_reason": {**STR, "enum": ["stop", "length"]},
                    },
                    ["index", "message", "finish_reason"],
                ),
                minItems=1,
                maxItems=1,
            ),
            "usage": {**ref("Usage"), "description": "absent for extractive answers"},
            "citations": array(ref("Citation")),
            "sources": array(ref("SourceRef")),
        },
        ["id", "object", "created", "model", "choices", "citations", "sources"],
    ),
    "ChatCompletionChunk": obj(
        {
            "id": STR,
            "object": {"const": "chat.completion.chunk"},
            "created": INT,
            "model": STR,
            "choices": array(
                obj(
                    {
                        "index": INT,
                        "delta": obj(
                            {"role": {"const": "assistant"}, "content": STR},
                        ),
                        "finish_reason": {"enum": ["stop", "length", None]},
                    },
                    ["index", "delta", "finish_reason"],
                )
            ),
            "usage": {
                "oneOf": [ref("Usage"), {"type": "null"}],
                "description": "only in the last chunk with stream_options.include_usage",
            },
            "citations": {**array(ref("Citation")), "description": "final chunk only"},
            "sources": {**array(ref("SourceRef")), "description": "final chunk only"},
        },
        ["id", "object", "created", "model", "choices"],
        description=(
            "Sent as 'data: <chunk JSON>' lines: first delta {role: assistant}, then one "
            "content delta per token, then a chunk with finish_reason, citations and "
            "sources, then 'data: [DONE]'. A failure mid-stream is sent as "
            "'data: {\"error\": {...}}' before [DONE]."
        ),
    ),
}


# -- paths ----------------------------------------------------------------------------------


def collection_paths() -> dict[str, Schema]:
    tag = "collections"
    name_body = json_body(ref("CollectionName"))
    return {
        "/api/v1/collections": {
            "get": op(
                "Collections the caller may read",
                tag,
                {"200": ok(obj({"collections": array(ref("Collection"))}, ["collections"]))},
            ),
            "post": op(
                "Create a collection (admins and editors)",
                tag,
                {
                    "201": {
                        **ok(ref("Collection"), "Created"),
                        "headers": {"Location": {"schema": STR}},
                    },
                    **errors(400, 403, 409, 413),
                },
                body=name_body,
            ),
        },
        "/api/v1/collections/{collection_id}": {
            "parameters": [COLLECTION_ID],
            "get": op("One collection", tag, {"200": ok(ref("Collection")), **errors(404)}),
            "patch": op(
                "Rename a collection (write permission)",
                tag,
                {"200": ok(ref("Collection")), **errors(400, 403, 404, 409, 413)},
                body=name_body,
            ),
            "delete": op(
                "Delete a collection with its documents and indexes (write permission)",
                tag,
                {
                    "200": ok(
                        obj({"deleted": BOOL, "id": INT, "documents": INT}, ["deleted", "id"])
                    ),
                    **errors(403, 404),
                },
            ),
        },
        "/api/v1/collections/{collection_id}/documents": {
            "parameters": [COLLECTION_ID],
            "get": op(
                "Documents of a collection",
                tag,
                {
                    "200": ok(obj({"documents": array(ref("Document"))}, ["documents"])),
                    **errors(400, 404),
                },
                params=[
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": DOC_STATUS,
                        "description": "only documents with this status",
                    }
                ],
            ),
            "post": op(
                "Upload files (write permission); zip archives expand into their members",
                tag,
                {
                    "202": ok(
                        obj({"uploads": array(ref("Upload"))}, ["uploads"]),
                        "Stored and queued; poll the documents for their status",
                    ),
                    **errors(400, 403, 404, 413, 503),
                },
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": obj(
                                {
                                    "file": array(BINARY),
                                    "files": array(BINARY),
                                },
                                description="one or more parts named 'file' (or 'files')",
                            )
                        }
                    },
                },
            ),
        },
        "/api/v1/collections/{collection_id}/reindex": {
            "parameters": [COLLECTION_ID],
            "post": op(
                "Rebuild the collection's indexes from the database (write permission)",
                tag,
                {
                    "202": ok(obj({"id": INT, "status": {"const": "queued"}}), "Queued"),
                    **errors(403, 404, 503),
                },
            ),
        },
    }


def document_paths() -> dict[str, Schema]:
    tag = "documents"
    return {
        "/api/v1/documents/{doc_id}": {
            "parameters": [DOC_ID],
            "get": op(
                "A document's status; 'error' holds the reason when it failed",
                tag,
                {"200": ok(ref("Document")), **errors(404)},
            ),
            "delete": op(
                "Delete a document (write permission)",
                tag,
                {
                    "200": ok(obj({"deleted": BOOL, "id": STR}, ["deleted", "id"])),
                    **errors(403, 404),
                },
            ),
        },
        "/api/v1/documents/{doc_id}/retry": {
            "parameters": [DOC_ID],
            "post": op(
                "Process a failed document again (write permission)",
                tag,
                {
                    "202": ok(
                        obj({"id": STR, "queued": {**INT, "description": "0 when indexed"}}),
                        "Queued",
                    ),
                    **errors(403, 404, 503),
                },
            ),
        },
        "/api/v1/documents/{doc_id}/pages": {
            "parameters": [DOC_ID],
            "get": op(
                "The extracted text of every page (citation char spans index into it)",
                tag,
                {
                    "200": ok(
                        obj(
                            {"document": ref("Document"), "pages": array(ref("Page"))},
                            ["document", "pages"],
                        )
                    ),
                    **errors(404),
                },
            ),
        },
        "/api/v1/documents/{doc_id}/file": {
            "parameters": [DOC_ID],
            "get": op(
                "The original file as uploaded",
                tag,
                {
                    "200": {
                        "description": (
                            "PDFs inline as application/pdf; every other type as an "
                            "application/octet-stream attachment"
                        ),
                        "content": {"application/pdf": {}, "application/octet-stream": {}},
                    },
                    **errors(404),
                },
            ),
        },
    }


def ask_paths() -> dict[str, Schema]:
    return {
        "/api/v1/ask": {
            "post": op(
                "Ask a question over the collections the caller may read",
                "ask",
                {
                    "200": {
                        "description": (
                            "JSON, or server-sent events (AskEvent) when Accept includes "
                            "text/event-stream or stream is true"
                        ),
                        "content": {
                            JSON: {"schema": ref("AskResponse")},
                            SSE: {"schema": ref("AskEvent")},
                        },
                    },
                    **errors(400, 404, 413, 503),
                },
                body=json_body(ref("AskRequest")),
            )
        }
    }


def chat_paths() -> dict[str, Schema]:
    tag = "chats"
    return {
        "/api/v1/chats": {
            "get": op(
                "The caller's chats, newest first",
                tag,
                {"200": ok(obj({"chats": array(ref("Chat"))}, ["chats"]))},
            ),
            "post": op(
                "Start a chat",
                tag,
                {"201": ok(CHAT_ENVELOPE, "Created"), **errors(400, 404, 413)},
                body={**json_body(ref("ChatCreate")), "required": False},
            ),
        },
        "/api/v1/chats/{chat_id}": {
            "parameters": [CHAT_ID],
            "get": op(
                "A chat with its messages",
                tag,
                {
                    "200": ok(
                        obj(
                            {"chat": ref("Chat"), "messages": array(ref("ChatMessage"))},
                            ["chat", "messages"],
                        )
                    ),
                    **errors(404),
                },
            ),
            "patch": op(
                "Rename a chat or change its collections",
                tag,
                {"200": ok(CHAT_ENVELOPE), **errors(400, 404, 413)},
                body=json_body(ref("ChatCreate")),
            ),
            "delete": op("Delete a chat", tag, {"204": {"description": "Deleted"}, **errors(404)}),
        },
    }


def me_paths() -> dict[str, Schema]:
    tag = "me"
    return {
        "/api/v1/me": {
            "get": op("The signed-in user and their preferences", tag, {"200": ok(ref("Me"))}),
        },
        "/api/v1/me/preferences": {
            "put": op(
                "Change preferences (merged; null resets a key)",
                tag,
                {
                    "200": ok(obj({"preferences": ref("Preferences")}, ["preferences"])),
                    **errors(400, 413),
                },
                body=json_body(ref("Preferences")),
            ),
        },
    }


def summary_paths() -> dict[str, Schema]:
    tag = "summaries"
    job = obj({"job": ref("SummaryJob")}, ["job"])
    download = {
        "description": "the finished summary as an attachment",
        "headers": {"Content-Disposition": {"schema": STR}},
    }
    return {
        "/api/v1/summaries": {
            "get": op(
                "The caller's summary jobs, newest first",
                tag,
                {"200": ok(obj({"jobs": array(ref("SummaryJob"))}, ["jobs"])), **errors(400)},
                params=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {**INT, "minimum": 1, "maximum": 200, "default": 50},
                    }
                ],
            ),
            "post": op(
                "Summarize a document or a collection in the background",
                tag,
                {"202": ok(job, "Queued"), **errors(400, 403, 404, 409, 413, 503)},
                body=json_body(ref("SummaryRequest")),
                description=(
                    "Anyone who may read a document may summarize it; whole collections "
                    "need the admin or editor role. 409: the caller already has the "
                    "maximum of jobs queued or running. The model runs at batch priority: "
                    "questions go first."
                ),
            ),
        },
        "/api/v1/summaries/{job_id}": {
            "parameters": [JOB_ID],
            "get": op(
                "A summary job: status, progress and, when done, the result",
                tag,
                {"200": ok(job), **errors(404)},
            ),
        },
        "/api/v1/summaries/{job_id}/cancel": {
            "parameters": [JOB_ID],
            "post": op(
                "Cancel a job: a queued one at once, a running one within seconds",
                tag,
                {"200": ok(job), **errors(404)},
            ),
        },
        "/api/v1/summaries/{job_id}.md": {
            "parameters": [JOB_ID],
            "get": op(
                "The finished summary as Markdown",
                tag,
                {
                    "200": {**download, "content": {"text/markdown": {"schema": STR}}},
                    **errors(404, 409),
                },
            ),
        },
        "/api/v1/summaries/{job_id}.json": {
            "parameters": [JOB_ID],
            "get": op(
                "The finished summary as JSON",
                tag,
                {
                    "200": {**download, "content": {JSON: {"schema": ref("SummaryResult")}}},
                    **errors(404, 409),
                },
            ),
        },
    }


def meta_paths() -> dict[str, Schema]:
    return {
        "/api/v1/openapi.json": {
            "get": op(
                "This description",
                "meta",
                {"200": ok({"type": "object"}, "The OpenAPI 3.1 document")},
                public=True,
            )
        }
    }


def openai_paths() -> dict[str, Schema]:
    tag = "openai"
    return {
        "/v1/models": {
            "get": op(
                "Models: 'docqa' (all readable collections) and 'docqa/<collection>'",
                tag,
                {"200": ok(ref("ModelList"))},
            )
        },
        "/v1/chat/completions": {
            "post": op(
                "OpenAI-compatible chat completion over the documents",
                tag,
                {
                    "200": {
                        "description": "A chat.completion, or chunks as server-sent events",
                        "content": {
                            JSON: {"schema": ref("ChatCompletion")},
                            SSE: {"schema": ref("ChatCompletionChunk")},
                        },
                    },
                    **errors(400, 404, 413, 503),
                },
                body=json_body(ref("ChatCompletionRequest")),
                description=(
                    "The model selects the collections: 'docqa' searches every collection "
                    "the caller may read, 'docqa/<name>' one of them. An unknown or "
                    "unreadable model is 404."
                ),
            )
        },
    }


@cache
def openapi_spec() -> dict[str, Any]:
    """The whole document (built once; callers must not change it)."""
    paths: dict[str, Schema] = {}
    for part in (
        meta_paths,
        collection_paths,
        document_paths,
        ask_paths,
        chat_paths,
        me_paths,
        summary_paths,
        openai_paths,
    ):
        paths.update(part())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "docqa API",
            "version": _version(),
            "description": (
                "Offline document question answering. JSON everywhere; errors are "
                '{"error": {"code", "message"}}. Authenticate with an API token '
                "(Authorization: Bearer dq_...) or a signed-in session; session requests "
                "that change something also send the X-CSRF-Token header."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerToken": []}, {"session": []}],
        "tags": [
            {"name": name}
            for name in (
                "collections",
                "documents",
                "ask",
                "chats",
                "me",
                "summaries",
                "openai",
                "meta",
            )
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": error_components(),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (dq_...) created in the portal or by an admin",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "docqa_session",
                    "description": "the browser session; unsafe methods need X-CSRF-Token",
                },
            },
        },
    }
