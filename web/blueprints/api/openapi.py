"""``GET /api/v1/openapi.json``: the API description, readable without signing in."""

from __future__ import annotations

from flask import Response, jsonify

from web.blueprints.api import bp
from web.contracts.operation import JSON, Reply, operation
from web.openapi import openapi_spec


@bp.get("/openapi.json")
@operation(
    "This description",
    "meta",
    {200: Reply(description="The OpenAPI 3.1 document", media={JSON: None})},
    public=True,
)
def openapi_json() -> Response:
    return jsonify(openapi_spec())
