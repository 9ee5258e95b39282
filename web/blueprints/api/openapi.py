"""``GET /api/v1/openapi.json``: the API description, readable without signing in."""

from __future__ import annotations

from flask import Response, jsonify

from web.blueprints.api import bp
from web.openapi import openapi_spec


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_spec())
