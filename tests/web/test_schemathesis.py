"""A bounded schemathesis run (issue 12, deliverable 3): property-based requests made from
the generated OpenAPI description, sent to the real app (SQLite, the packaged MiniLM,
extractive answers) as an admin with an API token. No answer may be a 500, and every
answer must be what the description promises: a documented status, content type,
headers and body schema. Valid and invalid requests both (``negative_data_rejection``:
what the description forbids must be refused with a 4xx).

Bounded for CI: a few examples per operation, derandomized (the same requests on every
run), so it is a regression test, not a search; ``DOCQA_SCHEMATHESIS_EXAMPLES`` raises the
count for a longer hunt by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qa.retrieval.embedder import Embedder
from tests.web.conftest import WebEnv, running_env
from tests.web.live import copy_data_dir
from web.openapi import openapi_spec

EXAMPLES = int(os.environ.get("DOCQA_SCHEMATHESIS_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_env(
    tmp_path_factory: pytest.TempPathFactory, seeded_template: Path, embedder: Embedder
) -> Iterator[WebEnv]:
    """What ``web`` gives a test (the seeded data, SQLite), one copy for the whole run."""
    data = copy_data_dir(seeded_template, tmp_path_factory.mktemp("schemathesis") / "var")
    with running_env(data, embedder) as env:
        yield env


@pytest.fixture(scope="module")
def admin_token(api_env: WebEnv) -> str:
    return api_env.token("admin", "schemathesis")


# The description itself, as generated (tests/web/test_openapi.py holds it equal to what
# /api/v1/openapi.json serves). schemathesis.pytest.from_fixture would load it from the
# app, but it needs pytest's private Item._nodeid, gone in pytest 9.
schema = schemathesis.openapi.from_dict(openapi_spec())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_described(case: Any, api_env: WebEnv, admin_token: str) -> None:
    case.call_and_validate(
        app=api_env.app, headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS
    )
