"""The OpenAPI 3.1 description of docqa's HTTP API, served at ``/api/v1/openapi.json``.

Generated, not written: every API view declares its contract with ``@operation``
(``web.contracts``), and this module walks the routes of the API blueprints, reads those
declarations and turns their pydantic models into JSON Schema components. A route without
a declaration is missing from the description, which ``tests/web/test_openapi.py``
(route table and description compared both ways) reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

from flask import Flask
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from qa.limits import MAX_ANONYMOUS_BODY_BYTES, MAX_REQUEST_BODY_BYTES
from web.contracts.api import Error
from web.contracts.base import Id
from web.contracts.operation import JSON, Operation, Reply, declared

SSE = "text/event-stream"

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
API_PREFIXES = ("/api/v1/", "/v1/")
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")

#: status -> (component name, description)
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON, a missing field or a value of the wrong type or range"),
    401: ("Unauthenticated", "No session and no valid API token"),
    403: ("Forbidden", "The role or grant does not allow this, or the CSRF token is missing"),
    404: ("NotFound", "No such resource, or one the caller may not see"),
    409: ("Conflict", "The name is taken"),
    413: (
        "TooLarge",
        "The body is over its cap, told from the headers before it is read:"
        f" {MAX_ANONYMOUS_BODY_BYTES // 1024} KiB without credentials,"
        f" {MAX_REQUEST_BODY_BYTES // 2**20} MiB for JSON, max_upload_mb for uploads",
    ),
    415: (
        "UnsupportedMediaType",
        "A multipart/form-data body sent to an endpoint that takes JSON",
    ),
    429: ("RateLimited", "Too many requests; retry after Retry-After seconds"),
    500: ("InternalError", "A defect on docqa's side, logged with its traceback"),
    503: ("Unavailable", "Model queue full or a needed part not running; see Retry-After"),
}
#: every operation that needs credentials can answer these
AUTH_ERRORS = (401, 429)
#: every operation can answer this
ANY_ERRORS = (500,)
#: every operation that reads a request body can answer these (web.bodies guards them
#: all); one that takes JSON also refuses a multipart body
BODY_ERRORS = (400, 413)
JSON_BODY_ERRORS = (*BODY_ERRORS, 415)
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}

#: path variables of the API routes (their types come from the route converters)
PATH_PARAMETERS = {
    "collection_id": "collection id",
    "doc_id": "document id (a content hash)",
    "chat_id": "chat id",
    "job_id": "summary job id",
    "message_id": "chat message id (an answer)",
}
#: an integer path variable: an id as the request models take it (``Id``); the route's
#: converter (``web.requests.IdConverter``) takes no larger one (a 404)
ID_SCHEMA = TypeAdapter(Id).json_schema()
TAGS = ("collections", "documents", "ask", "chats", "me", "summaries", "openai", "meta")
SECURITY_SCHEMES = {
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
}
DESCRIPTION = (
    "Offline document question answering. JSON everywhere; errors are "
    '{"error": {"code", "message"}}. Authenticate with an API token '
    "(Authorization: Bearer dq_...) or a signed-in session; session requests "
    "that change something also send the X-CSRF-Token header."
)


class _Schemas(GenerateJsonSchema):
    """pydantic's generator without a title on every property (the name says it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@cache
def openapi_spec() -> dict[str, Any]:
    """The whole document (built once; callers must not change it)."""
    operations = list(api_operations(_routes_app()))
    refs, schemas = components(operations)
    return {
        "openapi": "3.1.0",
        "info": {"title": "docqa API", "version": _version(), "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearerToken": []}, {"session": []}],
        "tags": [{"name": name} for name in TAGS],
        "paths": paths(operations, refs),
        "components": {
            "schemas": schemas,
            "responses": error_components(refs[(Error, "serialization")]),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _version() -> str:
    try:
        return version("docqa")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def _routes_app() -> Flask:
    """An app with only the API blueprints: their routes, without services or settings."""
    from web.blueprints import api, openai  # the blueprints import this module

    app = Flask(__name__)
    for module in (api, openai):
        app.register_blueprint(module.bp)
    return app


Routed = tuple[str, str, Rule, Operation]


def api_operations(app: Flask) -> Iterator[Routed]:
    """(OpenAPI path, method, rule, declaration) of every declared API route."""
    for rule in app.url_map.iter_rules():
        op = declared(app.view_functions[rule.endpoint])
        if op is None or not rule.rule.startswith(API_PREFIXES):
            continue
        path = _CONVERTER.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield path, method.lower(), rule, op


# -- components -----------------------------------------------------------------------------

ModelKey = tuple[type[BaseModel], JsonSchemaMode]


def components(operations: list[Routed]) -> tuple[dict[ModelKey, Schema], dict[str, Schema]]:
    """A reference for each model the operations use, and the schemas they refer to."""
    keys = sorted(set(_models(operations)), key=lambda k: (k[0].__name__, k[1]))
    refs, top = models_json_schema(keys, ref_template=REF, schema_generator=_Schemas)
    # models_json_schema also takes dataclasses; only models are passed, only models come back
    return cast(dict[ModelKey, Schema], refs), dict(sorted(top.get("$defs", {}).items()))


def _models(operations: list[Routed]) -> Iterator[ModelKey]:
    yield Error, "serialization"
    for _path, _method, _rule, op in operations:
        if op.body is not None:
            yield op.body, "validation"
        for reply in op.replies.values():
            for model in reply.content().values():
                if model is not None:
                    yield model, "serialization"


def error_components(error_ref: Schema) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        out[name] = {"description": description, "content": {JSON: {"schema": error_ref}}}
        if status in (429, 503):
            out[name]["headers"] = _RETRY_AFTER
    return out


# -- paths ----------------------------------------------------------------------------------


def paths(operations: list[Routed], refs: dict[ModelKey, Schema]) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for path, method, rule, op in operations:
        item = out.setdefault(path, {})
        parameters = path_parameters(rule)
        if parameters:
            item["parameters"] = parameters
        item[method] = operation_object(op, refs)
    return dict(sorted(out.items()))


def path_parameters(rule: Rule) -> list[Schema]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": ID_SCHEMA if converter == "int" else {"type": "string"},
            "description": PATH_PARAMETERS[name],
        }
        for converter, name in _CONVERTER.findall(rule.rule)
    ]


def operation_object(op: Operation, refs: dict[ModelKey, Schema]) -> Schema:
    out: Schema = {"summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    if op.query is not None:
        out["parameters"] = query_parameters(op.query)
    body = request_body(op, refs)
    if body is not None:
        out["requestBody"] = body
    out["responses"] = responses(op, refs)
    if op.public:
        out["security"] = []
    return out


def request_body(op: Operation, refs: dict[ModelKey, Schema]) -> Schema | None:
    if op.raw_body is not None:
        return {"required": True, "content": dict(op.raw_body)}
    if op.body is None:
        return None
    schema = refs[(op.body, "validation")]
    return {"required": op.body_required, "content": {JSON: {"schema": schema}}}


def query_parameters(model: type[BaseModel]) -> list[Schema]:
    """Each field of a query model as a parameter (its schema inlined, as OpenAPI wants)."""
    schema = model.model_json_schema(ref_template=REF, schema_generator=_Schemas)
    required = set(schema.get("required", []))
    out = []
    for name, field in schema["properties"].items():
        parameter: Schema = {"name": name, "in": "query", "required": name in required}
        if "description" in field:
            parameter["description"] = field.pop("description")
        out.append({**parameter, "schema": _not_null(field)})
    return out


def _not_null(field: Schema) -> Schema:
    """A query parameter is absent or text, never null: ``X | None`` documents as ``X``."""
    options = [option for option in field.pop("anyOf", []) if option.get("type") != "null"]
    if len(options) == 1:
        field.update(options[0])
    if "default" in field and field["default"] is None:
        del field["default"]
    if "enum" in field:
        field["enum"] = [value for value in field["enum"] if value is not None]
    return field


def responses(op: Operation, refs: dict[ModelKey, Schema]) -> Schema:
    out: Schema = {str(status): reply_object(reply, refs) for status, reply in op.replies.items()}
    errors = {*op.errors, *ANY_ERRORS}
    if not op.public:
        errors.update(AUTH_ERRORS)
    if op.body is not None:
        errors.update(JSON_BODY_ERRORS)
    elif op.raw_body is not None:
        errors.update(BODY_ERRORS)
    for status in sorted(errors):
        out[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    return out


def _media_schema(mime: str, ref: Schema, reply: Reply) -> Schema:
    """The schema of a body of type ``mime`` whose documents are the model at ``ref``.

    A text/event-stream is a sequence of events, each an object of fields (``event``,
    ``data``, ...), as OpenAPI 3.2's ``itemSchema`` and validators such as schemathesis
    read it; the model is the JSON document in each event's ``data`` (JSON Schema's
    ``contentMediaType`` / ``contentSchema``), except a stream's non-JSON last word."""
    if mime != SSE:
        return ref
    data: Schema = {"type": "string", "contentMediaType": JSON, "contentSchema": ref}
    if reply.stream_end is not None:
        data = {"type": "string", "if": {"const": reply.stream_end}, "else": data}
    return {
        "type": "object",
        "properties": {"event": {"type": "string"}, "id": {"type": "string"}, "data": data},
        "required": ["data"],
    }


def reply_object(reply: Reply, refs: dict[ModelKey, Schema]) -> Schema:
    out: Schema = {"description": reply.description}
    if reply.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    content = {
        mime: {"schema": _media_schema(mime, refs[(model, "serialization")], reply)}
        if model is not None
        else {}
        for mime, model in reply.content().items()
    }
    if content:
        out["content"] = content
    return out
