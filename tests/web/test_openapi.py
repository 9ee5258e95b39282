"""The OpenAPI description: served, complete, well-formed, and true to real responses.

The route table and the description are compared both ways, and real responses of every
JSON route are checked against their documented schema, so neither a route nor a response
shape can change without the description changing with it.
"""

from __future__ import annotations

import io
import json
import re
from functools import cache
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from qa.limits import MAX_JOBS_LISTED, MAX_QUESTION_CHARS, MAX_SOURCES
from tests.conftest import REPO
from tests.web.conftest import WebEnv
from web.openapi import openapi_spec

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
API_PREFIXES = ("/api/v1/", "/v1/")
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def routed(app: Flask) -> dict[tuple[str, str], dict[str, str | None]]:
    """{(OpenAPI path, method): {variable: converter}} for every API rule of the app."""
    out: dict[tuple[str, str], dict[str, str | None]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIXES):
            continue
        path = _CONVERTER.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        converters = {m.group(2): m.group(1) for m in _CONVERTER.finditer(rule.rule)}
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            out[(path, method.lower())] = converters
    return out


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def operation(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = spec["paths"][path][method]
    return op


# -- real responses against their schemas, with jsonschema -----------------------------------

#: where the description sits in the registry; its "#/components/..." refs resolve inside it
SPEC_URI = "urn:docqa:openapi"


@cache
def registry() -> Registry[Any]:
    resource = DRAFT202012.create_resource(openapi_spec())
    return Registry().with_resource(SPEC_URI, resource)


def pointer(*parts: str) -> str:
    """A JSON pointer to ``parts`` of the description (RFC 6901 escapes)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def response_pointer(spec: dict[str, Any], path: str, method: str, status: int, mime: str) -> str:
    responses = operation(spec, path, method)["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    ref = responses[str(status)].get("$ref")
    where = ref[1:] if ref else pointer("paths", path, method, "responses", str(status))
    return where + pointer("content", mime, "schema")


def violations(spec: dict[str, Any], schema_pointer: str, value: Any) -> list[str]:
    """What is wrong with ``value`` by the schema at ``schema_pointer`` of the description."""
    assert spec is openapi_spec(), "the registry holds the served description"
    schema = {"$ref": f"{SPEC_URI}#{schema_pointer}"}
    validator = Draft202012Validator(schema, registry=registry())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(value)]


def conforms(spec: dict[str, Any], path: str, method: str, resp: Any) -> Any:
    """Assert that a real JSON response is what the description promises; return the body."""
    body = resp.get_json()
    where = response_pointer(spec, path, method, resp.status_code, "application/json")
    problems = violations(spec, where, body)
    assert not problems, f"{method.upper()} {path} {resp.status_code}: {problems}"
    return body


# -- the document itself --------------------------------------------------------------------


def test_served_without_auth(web: WebEnv) -> None:
    resp = web.app.test_client().get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["openapi"] == "3.1.0"
    assert body["info"]["title"] and body["info"]["version"]
    assert body == json.loads(json.dumps(openapi_spec()))


def test_every_route_is_described_and_nothing_else(web: WebEnv) -> None:
    spec = openapi_spec()
    routes = set(routed(web.app))
    assert routes, "no API routes registered"
    assert sorted(routes - documented(spec)) == [], "routes missing from the description"
    assert sorted(documented(spec) - routes) == [], "described operations with no route"


def test_the_readme_s_rest_table_lists_every_route(web: WebEnv) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[
        readme.index("**REST API** (`/api/v1`") : readme.index("**OpenAI-compatible**")
    ]
    listed: set[tuple[str, str]] = set()
    for span in re.findall(r"`([A-Z][A-Z, ]*) (/[^`\s]+)`", section):
        methods, path = span
        for method in methods.split(","):
            path = re.sub(r"\{\w+\}", "{}", path.removeprefix("/api/v1"))
            listed.add((method.strip().lower(), path))
    routes = {
        (method, re.sub(r"\{\w+\}", "{}", path.removeprefix("/api/v1")))
        for path, method in routed(web.app)
        if path.startswith("/api/v1/")
    }
    assert routes - listed == set(), "routes missing from the README's REST table"
    assert listed - routes == set(), "README rows that are no route"


def test_path_parameters_match_the_routes(web: WebEnv) -> None:
    spec = openapi_spec()
    for (path, method), converters in routed(web.app).items():
        item = spec["paths"][path]
        params = item.get("parameters", []) + operation(spec, path, method).get("parameters", [])
        in_path = {p["name"]: p for p in params if p["in"] == "path"}
        assert set(in_path) == set(converters), (path, method)
        for name, converter in converters.items():
            assert in_path[name]["required"] is True
            expected = "integer" if converter == "int" else "string"
            assert in_path[name]["schema"]["type"] == expected, (path, name)


def test_every_reference_resolves() -> None:
    spec = openapi_spec()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert len(refs) > 50
    resolver = registry().resolver(base_uri=SPEC_URI)
    for ref in refs:
        assert resolver.lookup(ref).contents is not None, ref
    used = {r.rsplit("/", 1)[-1] for r in refs}
    unused = set(spec["components"]["schemas"]) - used
    assert unused == set(), f"schemas nothing refers to: {unused}"


def test_operations_are_complete() -> None:
    spec = openapi_spec()
    assert spec["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerToken"]["description"],
    }
    assert {"bearerToken": []} in spec["security"]
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = registry().resolver(base_uri=SPEC_URI).lookup(error["properties"]["error"]["$ref"])
    assert detail.contents["required"] == ["code", "message"]
    for path, method in documented(spec):
        op = operation(spec, path, method)
        assert op["summary"] and op["tags"], (path, method)
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), (path, method)
        assert "500" in statuses, (path, method)  # every error a client can meet is listed
        if "requestBody" in op:
            assert {"400", "413"} <= statuses, (path, method)
            json_body = "application/json" in op["requestBody"]["content"]
            assert ("415" in statuses) == json_body, (path, method)
        if path == "/api/v1/openapi.json":
            assert op["security"] == []
            continue
        assert "security" not in op  # the global bearer/session requirement applies
        assert {"401", "429"} <= statuses, (path, method)
        if method in ("post", "put", "patch") and "requestBody" in op:
            assert "413" in statuses or "multipart/form-data" in op["requestBody"]["content"]
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert response["$ref"].startswith("#/components/responses/"), (path, status)


# -- real responses against the description -------------------------------------------------


def test_rest_responses_match_their_schemas(web: WebEnv) -> None:
    spec, http = openapi_spec(), web.app.test_client()
    editor, bob = bearer(web.token("editor")), bearer(web.token("bob"))
    hb = web.collections["handbook"]

    conforms(spec, "/api/v1/collections", "get", http.get("/api/v1/collections", headers=bob))
    created = http.post("/api/v1/collections", json={"name": "spec-check"}, headers=editor)
    new = conforms(spec, "/api/v1/collections", "post", created)
    item = "/api/v1/collections/{collection_id}"
    conforms(spec, item, "get", http.get(f"/api/v1/collections/{hb}", headers=bob))
    renamed = http.patch(f"/api/v1/collections/{new['id']}", json={"name": "s2"}, headers=editor)
    conforms(spec, item, "patch", renamed)
    conforms(spec, item, "delete", http.delete(f"/api/v1/collections/{new['id']}", headers=editor))

    docs_path = "/api/v1/collections/{collection_id}/documents"
    docs = conforms(
        spec, docs_path, "get", http.get(f"/api/v1/collections/{hb}/documents", headers=bob)
    )["documents"]
    upload = http.post(
        f"/api/v1/collections/{hb}/documents",
        data={"file": (io.BytesIO(b"Lockers are on level 2 (amber-quill).\n"), "lockers.txt")},
        headers=editor,
    )
    (up,) = conforms(spec, docs_path, "post", upload)["uploads"]
    reindex = http.post(f"/api/v1/collections/{hb}/reindex", headers=editor)
    conforms(spec, "/api/v1/collections/{collection_id}/reindex", "post", reindex)
    web.wait_ingested()

    doc = "/api/v1/documents/{doc_id}"
    conforms(spec, doc, "get", http.get(f"/api/v1/documents/{docs[0]['id']}", headers=bob))
    pages = http.get(f"/api/v1/documents/{docs[0]['id']}/pages", headers=bob)
    conforms(spec, doc + "/pages", "get", pages)
    retry = http.post(f"/api/v1/documents/{up['document_id']}/retry", headers=editor)
    conforms(spec, doc + "/retry", "post", retry)
    gone = http.delete(f"/api/v1/documents/{up['document_id']}", headers=editor)
    conforms(spec, doc, "delete", gone)
    conforms(spec, doc, "get", http.get(f"/api/v1/documents/{up['document_id']}", headers=bob))


def test_other_api_responses_match_their_schemas(web: WebEnv) -> None:
    spec, http = openapi_spec(), web.app.test_client()
    alice = bearer(web.token("alice"))
    hb = web.collections["handbook"]

    conforms(spec, "/api/v1/me", "get", http.get("/api/v1/me", headers=alice))
    prefs = http.put("/api/v1/me/preferences", json={"temperature": 0.3}, headers=alice)
    conforms(spec, "/api/v1/me/preferences", "put", prefs)

    chat = conforms(
        spec, "/api/v1/chats", "post", http.post("/api/v1/chats", json={}, headers=alice)
    )["chat"]
    asked = http.post(
        "/api/v1/ask",
        json={"question": "What is the hotel limit in London?", "chat_id": chat["id"]},
        headers=alice,
    )
    conforms(spec, "/api/v1/ask", "post", asked)
    streamed = http.post(
        "/api/v1/ask",
        json={"question": "What is the hotel limit in London?", "stream": True},
        headers=alice,
    )
    kinds = [e["event"] for e in stream_conforms(spec, "/api/v1/ask", streamed)]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    conforms(spec, "/api/v1/chats", "get", http.get("/api/v1/chats", headers=alice))
    one = "/api/v1/chats/{chat_id}"
    full = conforms(spec, one, "get", http.get(f"/api/v1/chats/{chat['id']}", headers=alice))
    assert [m["role"] for m in full["messages"]] == ["user", "assistant"]
    patched = http.patch(
        f"/api/v1/chats/{chat['id']}", json={"title": "t", "collection_ids": [hb]}, headers=alice
    )
    conforms(spec, one, "patch", patched)
    deleted = http.delete(f"/api/v1/chats/{chat['id']}", headers=alice)
    assert str(deleted.status_code) in operation(spec, one, "delete")["responses"]


def test_openai_responses_match_their_schemas(web: WebEnv) -> None:
    spec, http = openapi_spec(), web.app.test_client()
    alice = bearer(web.token("alice"))
    conforms(spec, "/v1/models", "get", http.get("/v1/models", headers=alice))
    body = {"model": "docqa", "messages": [{"role": "user", "content": "hotel limit London?"}]}
    path = "/v1/chat/completions"
    conforms(spec, path, "post", http.post(path, json=body, headers=alice))
    conforms(spec, path, "post", http.post(path, json={**body, "model": "x"}, headers=alice))
    conforms(spec, path, "post", http.post(path, json=body))

    streamed = http.post(path, json={**body, "stream": True}, headers=alice)
    events = stream_conforms(spec, path, streamed)
    assert events[-1] == {"data": "[DONE]"} and len(events) > 2


def stream_conforms(spec: dict[str, Any], path: str, resp: Any) -> list[dict[str, str]]:
    """Every server-sent event of ``resp`` is the event object the description promises,
    and its ``data`` (unless the stream's documented last word) the JSON it describes."""
    where = response_pointer(spec, path, "post", 200, "text/event-stream")
    described = spec["paths"][path]["post"]["responses"]["200"]["content"]
    data_schema = described["text/event-stream"]["schema"]["properties"]["data"]
    end = data_schema.get("if", {}).get("const")
    json_pointer = where + pointer("properties", "data", *(["else"] if end else []))
    events = []
    for block in resp.get_data(as_text=True).strip().split("\n\n"):
        event = dict(line.split(": ", 1) for line in block.split("\n"))
        assert violations(spec, where, event) == [], event
        if event["data"] != end:
            value = json.loads(event["data"])
            assert violations(spec, json_pointer + "/contentSchema", value) == [], event
        events.append(event)
    return events


@pytest.mark.parametrize(
    ("method", "url", "path", "status"),
    [
        ("get", "/api/v1/collections/999999", "/api/v1/collections/{collection_id}", 404),
        ("post", "/api/v1/collections", "/api/v1/collections", 400),
        ("delete", "/api/v1/documents/nope", "/api/v1/documents/{doc_id}", 404),
    ],
)
def test_error_bodies_match_the_schema(
    web: WebEnv, method: str, url: str, path: str, status: int
) -> None:
    spec = openapi_spec()
    resp = web.app.test_client().open(
        url, method=method.upper(), json=[], headers=bearer(web.token("admin"))
    )
    assert resp.status_code == status
    conforms(spec, path, method, resp)


def test_multipart_to_a_json_endpoint_is_the_documented_415(web: WebEnv) -> None:
    spec = openapi_spec()
    resp = web.app.test_client().post(
        "/api/v1/collections",
        data={"name": "x"},
        content_type="multipart/form-data",
        headers=bearer(web.token("admin")),
    )
    assert resp.status_code == 415
    assert "415" in operation(spec, "/api/v1/collections", "post")["responses"]
    conforms(spec, "/api/v1/collections", "post", resp)


def test_component_schemas_are_valid_json_schema() -> None:
    for schema in openapi_spec()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the keyword


# -- request validation: the models' errors as clear 400s -----------------------------------

ASK, CHATS, SUMMARIES = "/api/v1/ask", "/api/v1/chats", "/api/v1/summaries"
Q = "What is the hotel limit in London?"
USER_TURN = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("method", "url", "body", "message"),
    [
        ("post", ASK, {}, "'question' is required"),
        ("post", ASK, {"question": 42}, "'question' must be a string"),
        (
            "post",
            ASK,
            {"question": "q" * (MAX_QUESTION_CHARS + 1)},
            f"'question' is longer than {MAX_QUESTION_CHARS} characters",
        ),
        ("post", ASK, {"question": Q, "k": "6"}, "'k' must be an integer"),
        ("post", ASK, {"question": Q, "k": True}, "'k' must be an integer"),
        ("post", ASK, {"question": Q, "k": 0}, f"'k' must be between 1 and {MAX_SOURCES}"),
        ("post", ASK, {"question": Q, "temperature": 5}, "'temperature' must be between 0 and 2"),
        ("post", ASK, {"question": Q, "top_p": 0}, "'top_p' must be greater than 0 and at most 1"),
        ("post", ASK, {"question": Q, "temperature": True}, "'temperature' must be a number"),
        ("post", ASK, {"question": Q, "stream": "yes"}, "'stream' must be true or false"),
        ("post", ASK, {"question": Q, "collection_ids": [True]}, "'collection_ids[0]' must be"),
        ("post", ASK, [Q], "the body is not a JSON object"),
        ("post", CHATS, {"title": ["x"]}, "'title' must be a string"),
        ("put", "/api/v1/me/preferences", {"colour": "red"}, "'colour' is not a field here"),
        ("post", SUMMARIES, {"collection_id": 0}, "'collection_id' must be between 1 and"),
        (
            "get",
            SUMMARIES + "?limit=0",
            None,
            f"query parameter 'limit' must be between 1 and {MAX_JOBS_LISTED}",
        ),
        ("get", SUMMARIES + "?limit=x", None, "query parameter 'limit' must be an integer"),
        (
            "post",
            "/v1/chat/completions",
            {"model": "docqa", "messages": [{"role": "tool", "content": "x"}]},
            "'messages[0].role' must be 'system', 'developer', 'user' or 'assistant'",
        ),
        (
            "post",
            "/v1/chat/completions",
            {"model": "docqa", "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "'messages[0].content' must be text (images and files are not supported)",
        ),
        (
            "post",
            "/v1/chat/completions",
            {"model": "docqa", "messages": USER_TURN, "n": 2},
            "'n' must be 1: docqa gives one answer per question",
        ),
        ("post", "/v1/chat/completions", {"model": "docqa"}, "'messages' is required"),
        (
            "post",
            "/v1/chat/completions",
            {"model": "docqa", "messages": []},
            "'messages' needs at least 1 items",
        ),
    ],
)
def test_invalid_requests_name_the_field(
    web: WebEnv, method: str, url: str, body: Any, message: str
) -> None:
    resp = web.app.test_client().open(
        url, method=method.upper(), json=body, headers=bearer(web.token("alice"))
    )
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].startswith(message), error["message"]
