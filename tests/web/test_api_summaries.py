"""Summaries over HTTP: the API (tokens and sessions), the portal page, the console button.

The ``web`` app answers extractively (no model), so its summaries are extractive too; one
test wires the real tiny model the way ``docqa serve`` does and checks the generative path.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from qa.accounts.audit import SUMMARIZE
from qa.llm.generate import OnnxQwenGenerator
from qa.retrieval.embedder import Embedder
from qa.store.db.models import Job
from qa.summaries.service import SummaryService
from tests.web.conftest import WebEnv, build_env
from tests.web.test_api import bearer, doc_id_by_name, error_code, falcon_id
from tests.web.test_openapi import conforms
from web.openapi import openapi_spec

API = "/api/v1/summaries"
JOB = f"{API}/{{job_id}}"


def travel_id(env: WebEnv) -> str:
    return doc_id_by_name(env, "handbook", "travel-and-expenses.pdf")


def wait_done(http: FlaskClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{API}/{job_id}", headers=headers).get_json()["job"]
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"summary {job_id} did not finish")


def test_document_summary_round_trip(web: WebEnv) -> None:
    spec, http = openapi_spec(), web.app.test_client()
    alice = bearer(web.token("alice"))
    submitted = http.post(API, json={"document_id": travel_id(web)}, headers=alice)
    assert submitted.status_code == 202
    job = conforms(spec, API, "post", submitted)["job"]
    assert job["target"] == "document" and job["name"].endswith("travel-and-expenses.pdf")
    assert job["status"] in ("queued", "running", "done")

    done = wait_done(http, job["id"], alice)
    one = conforms(spec, JOB, "get", http.get(f"{API}/{job['id']}", headers=alice))["job"]
    assert done["status"] == one["status"] == "done" and one["progress"] == 1.0
    result = one["result"]
    assert result["model"] == "extractive" and result["kind"] == "document"
    assert result["statements"] and all(
        set(s["pages"]) <= set(range(1, 10)) for s in result["statements"]
    )
    listed = conforms(spec, API, "get", http.get(API, headers=alice))["jobs"]
    assert [j["id"] for j in listed] == [job["id"]] and "result" not in listed[0]

    md = http.get(f"{API}/{job['id']}.md", headers=alice)
    assert md.status_code == 200 and md.mimetype == "text/markdown"
    assert md.headers["Content-Disposition"].startswith("attachment;")
    assert re.search(
        r'filename="summary-[\w.-]*travel-and-expenses\.md"', md.headers["Content-Disposition"]
    )
    text = md.get_data(as_text=True)
    assert text == result["markdown"] and "(p. " in text
    raw = http.get(f"{API}/{job['id']}.json", headers=alice)
    assert raw.status_code == 200 and raw.mimetype == "application/json"
    assert raw.headers["Content-Disposition"].startswith("attachment;")
    assert conforms(spec, JOB + ".json", "get", raw) == result

    cancelled = http.post(f"{API}/{job['id']}/cancel", headers=alice)
    assert conforms(spec, JOB + "/cancel", "post", cancelled)["job"]["status"] == "done"

    (event,) = web.svc.audit.list(action=SUMMARIZE)
    assert event.username == "alice" and event.details["job_id"] == job["id"]


def test_collection_summary_needs_an_editor_or_admin(web: WebEnv) -> None:
    http = web.app.test_client()
    hb = web.collections["handbook"]
    reader = http.post(API, json={"collection_id": hb}, headers=bearer(web.token("bob")))
    assert reader.status_code == 403 and error_code(reader) == "forbidden"
    editor = bearer(web.token("editor"))
    resp = http.post(API, json={"collection_id": hb, "max_statements": 5}, headers=editor)
    assert resp.status_code == 202
    done = wait_done(http, resp.get_json()["job"]["id"], editor)
    assert done["status"] == "done"
    result = done["result"]
    assert result["kind"] == "collection" and len(result["documents"]) == 4
    assert 1 <= len(result["statements"]) <= 5
    names = {d["document_name"] for d in result["documents"]}
    assert {s["document_name"] for s in result["statements"]} <= names


def test_bob_can_neither_summarize_nor_see_finance(web: WebEnv) -> None:
    http = web.app.test_client()
    bob, alice = bearer(web.token("bob")), bearer(web.token("alice"))
    for body in ({"document_id": falcon_id(web)}, {"collection_id": web.collections["finance"]}):
        resp = http.post(API, json=body, headers=bob)
        assert resp.status_code == 404 and error_code(resp) == "not_found"
        assert "Falcon" not in resp.get_data(as_text=True)
    secret = http.post(API, json={"document_id": falcon_id(web)}, headers=alice).get_json()["job"]
    wait_done(http, secret["id"], alice)
    for suffix, method in (("", "GET"), (".md", "GET"), (".json", "GET"), ("/cancel", "POST")):
        resp = http.open(f"{API}/{secret['id']}{suffix}", method=method, headers=bob)
        assert resp.status_code == 404, suffix
        assert "Falcon" not in resp.get_data(as_text=True)
    assert http.get(API, headers=bob).get_json()["jobs"] == []
    admin = http.get(f"{API}/{secret['id']}", headers=bearer(web.token("admin")))
    assert admin.status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (None, 400),
        ([], 400),
        ({}, 400),
        ({"document_id": "x", "collection_id": 1}, 400),
        ({"document_id": 7}, 400),
        ({"collection_id": "1"}, 400),
        ({"collection_id": 0}, 400),
        ({"document_id": "a" * 65}, 400),
        ({"document_id": "nope"}, 404),
        ({"collection_id": 999_999}, 404),
        ({"document_id": "x", "max_statements": 0}, 400),
        ({"document_id": "x", "max_statements": 51}, 400),
        ({"document_id": "x", "max_statements": True}, 400),
    ],
)
def test_bad_submissions(web: WebEnv, body: Any, status: int) -> None:
    http = web.app.test_client()
    headers = bearer(web.token("admin"))
    if body is None:
        resp = http.post(API, data="{not json", content_type="application/json", headers=headers)
    else:
        resp = http.post(API, json=body, headers=headers)
    assert resp.status_code == status, resp.get_data(as_text=True)
    conforms(openapi_spec(), API, "post", resp)


def test_unknown_jobs_wrong_methods_and_unfinished_downloads(web: WebEnv) -> None:
    http = web.app.test_client()
    admin = bearer(web.token("admin"))
    for url in (f"{API}/nope", f"{API}/nope.md", f"{API}/nope.json", f"{API}/{'x' * 300}"):
        resp = http.get(url, headers=admin)
        assert resp.status_code == 404 and error_code(resp) == "not_found", url
    assert http.post(f"{API}/nope/cancel", headers=admin).status_code == 404
    for method, url in (
        ("DELETE", API),
        ("PUT", API),
        ("DELETE", f"{API}/x"),
        ("POST", f"{API}/x"),
        ("GET", f"{API}/x/cancel"),
        ("POST", f"{API}/x.md"),
    ):
        resp = http.open(url, method=method, headers=admin)
        assert resp.status_code == 405 and "Allow" in resp.headers, (method, url)
        assert error_code(resp)
    assert http.get(API).status_code == 401
    assert http.post(API, json={"document_id": travel_id(web)}).status_code == 401

    # A job that has not finished has nothing to download yet.
    job = Job(
        id="f" * 32,
        kind="summary",
        status="running",
        collection_id=web.collections["handbook"],
        document_id=travel_id(web),
        user_id=web.users["admin"].user_id,
        payload={"target": "document", "name": "travel-and-expenses.pdf"},
    )
    with web.svc.db.session() as session:
        session.add(job)
        session.commit()
    resp = http.get(f"{API}/{job.id}.md", headers=admin)
    assert resp.status_code == 409 and error_code(resp) == "conflict"
    conforms(openapi_spec(), JOB + ".md", "get", resp)
    got = http.get(f"{API}/{job.id}", headers=admin).get_json()["job"]
    assert got["status"] == "running" and got["result"] is None
    cancel = http.post(f"{API}/{job.id}/cancel", headers=admin).get_json()["job"]
    assert cancel["cancel_requested"] is True and cancel["status"] == "running"


def test_portal_page_and_session_api(web: WebEnv) -> None:
    alice = web.client("alice")
    page = alice.get("/summaries")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="summary-jobs"' in html and "summaries.js" in html
    assert "Summarize whole collection" not in html  # readers summarize documents only
    assert "finance" in html and "handbook" in html
    # The page's script posts with the session and the CSRF header.
    resp = alice.post(API, json={"document_id": travel_id(web)})
    assert resp.status_code == 202
    job = resp.get_json()["job"]
    no_csrf = alice.http.post(API, json={"document_id": travel_id(web)})
    assert no_csrf.status_code == 403
    web.queue.summaries.wait_idle(60)
    html = alice.get(f"/summaries?job={job['id']}").get_data(as_text=True)
    assert f'data-job-id="{job["id"]}"' in html and f'data-open-job="{job["id"]}"' in html
    assert web.anonymous().get("/summaries").status_code == 302
    editor_page = web.client("editor").get("/summaries").get_data(as_text=True)
    assert "Summarize whole collection" in editor_page


def test_console_summarize_buttons(web: WebEnv) -> None:
    hb = web.collections["handbook"]
    editor = web.client("editor")
    page = editor.get(f"/admin/collections/{hb}").get_data(as_text=True)
    assert f'action="/admin/collections/{hb}/summarize"' in page
    assert page.count(">Summarize</button>") == 4  # one per indexed document
    resp = editor.post(f"/admin/collections/{hb}/summarize", data={"doc_id": travel_id(web)})
    assert resp.status_code == 302
    assert re.search(r"/summaries\?job=[0-9a-f]{32}$", resp.headers["Location"])
    whole = editor.post(f"/admin/collections/{hb}/summarize", data={})
    assert whole.status_code == 302
    web.queue.summaries.wait_idle(60)
    jobs = editor.get(API).get_json()["jobs"]
    assert sorted(j["target"] for j in jobs) == ["collection", "document"]
    assert all(j["status"] == "done" for j in jobs)
    # A document of another collection, or a reader, gets nowhere.
    wrong = editor.post(f"/admin/collections/{hb}/summarize", data={"doc_id": falcon_id(web)})
    assert wrong.status_code == 404
    bob = web.client("bob").post(f"/admin/collections/{hb}/summarize", data={})
    assert bob.status_code == 403


@pytest.fixture
def generative(
    tmp_path: Path, seeded_template: Path, embedder: Embedder, gen_int8: OnnxQwenGenerator
) -> Iterator[WebEnv]:
    """The seeded app with the tiny model, summaries wired as ``docqa serve`` wires them."""
    data = tmp_path / "var"
    shutil.copytree(seeded_template, data)
    env = build_env(data, embedder, generator=gen_int8)
    env.queue.attach_summaries(SummaryService.from_answers(env.svc.answers))
    try:
        yield env
    finally:
        env.svc.close()


def test_generative_summary_through_the_api(generative: WebEnv) -> None:
    http = generative.app.test_client()
    alice = bearer(generative.token("alice"))
    resp = http.post(API, json={"document_id": travel_id(generative)}, headers=alice)
    done = wait_done(http, resp.get_json()["job"]["id"], alice)
    assert done["status"] == "done", done["error"]
    result = done["result"]
    assert result["model"] == "generative"
    windows = [set(w["pages"]) for w in result["windows"]]
    for s in result["statements"]:
        assert any(set(s["pages"]) <= w for w in windows)
    assert "language model" in result["label"]
