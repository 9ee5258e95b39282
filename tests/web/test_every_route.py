"""Every route of the app, called the wrong way: no method, body or id may produce a 500.

Walks ``app.url_map`` so a route added later is covered without editing this file.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from werkzeug.routing import IntegerConverter, Rule

from tests.web.conftest import Client, WebEnv

# Hostile ids and bodies fail differently per database (integer overflow, text encoding).
pytestmark = pytest.mark.both_databases

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HOSTILE_IDS = {
    "int": ["0", "999999999", "-1", "99999999999999999999999"],
    "default": ["x", "nope", "..%2f..%2fetc%2fpasswd", "%00", "a" * 300, "<script>"],
}
BODIES: list[dict[str, Any]] = [
    {},
    {"data": "{not json", "content_type": "application/json"},
    {"data": "[1, 2, 3]", "content_type": "application/json"},
    {"data": '"just a string"', "content_type": "application/json"},
    {
        "data": '{"question": null, "name": 7, "messages": "x", "model": []}',
        "content_type": "application/json",
    },
    {"data": b"\xff\xfe\x00garbage", "content_type": "application/octet-stream"},
    {"data": {"name": "x" * 5000, "title": "", "csrf_token": "wrong"}},
    {"data": "--b\r\nbroken multipart", "content_type": "multipart/form-data; boundary=b"},
]


def _kind(rule: Rule, arg: str) -> str:
    # isinstance: the app installs its own IntegerConverter subclass (web.requests.IdConverter)
    return "int" if isinstance(rule._converters[arg], IntegerConverter) else "default"


def _urls(rule: Rule) -> list[str]:
    if not rule.arguments:
        return [rule.rule]
    urls = []
    for arg in sorted(rule.arguments):
        kind = _kind(rule, arg)
        for value in HOSTILE_IDS[kind]:
            if kind == "int" and value.startswith("-"):
                continue  # the int converter does not match it: a plain 404
            url = rule.rule
            for other in rule.arguments:
                # the other variables get a value their own converter matches
                fill = value if other == arg else ("1" if _kind(rule, other) == "int" else "x")
                url = re.sub(rf"<(?:\w+:)?{other}>", fill, url)
            urls.append(url)
    return urls


def _rules(env: WebEnv) -> list[Rule]:
    return [r for r in env.app.url_map.iter_rules() if r.endpoint != "static"]


@pytest.mark.parametrize("who", ["anonymous", "bob", "admin"])
def test_no_route_answers_500(web: WebEnv, who: str) -> None:
    client: Client = web.anonymous() if who == "anonymous" else web.client(who)
    failures: list[str] = []
    calls = 0
    for rule in _rules(web):
        if who != "anonymous" and rule.endpoint.startswith("auth."):
            # Signing in again or out (also everywhere) half-way would leave the rest of
            # the walk anonymous; the anonymous walk covers these routes.
            continue
        for url in _urls(rule):
            for method in ALL_METHODS:
                for body in BODIES if method != "GET" else [{}]:
                    calls += 1
                    resp = client.http.open(
                        url,
                        method=method,
                        headers={"X-CSRF-Token": client.csrf or "", "Accept": "application/json"},
                        **body,
                    )
                    if resp.status_code >= 500:
                        failures.append(f"{method} {url} {body} -> {resp.status_code}")
                    elif url.startswith(("/api/", "/v1/")) and resp.status_code >= 400:
                        payload = resp.get_json(silent=True)
                        if not (isinstance(payload, dict) and "error" in payload):
                            failures.append(f"{method} {url}: {resp.status_code} is not JSON")
                    resp.close()
    web.wait_ingested()
    assert calls > 1000  # the walk really covered the routes
    if who != "anonymous":  # ... and as that user, to the end
        assert client.get("/api/v1/me").get_json()["user"]["username"] == who
    assert not failures, "\n".join(failures[:40])


def test_wrong_methods_get_405_with_allow(web: WebEnv) -> None:
    client = web.client("admin")
    for rule in _rules(web):
        allowed = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        url = _urls(rule)[0]
        for method in set(ALL_METHODS) - allowed:
            resp = client.http.open(url, method=method, headers={"X-CSRF-Token": client.csrf})
            if resp.status_code == 405:
                assert "Allow" in resp.headers, f"{method} {url}"
            else:
                # Another rule may match the same URL with this method (e.g. /chats and
                # /chats/<id>); then that rule answers, never with a 500.
                assert resp.status_code < 500, f"{method} {url} -> {resp.status_code}"
