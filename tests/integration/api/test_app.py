"""Generated requests (schemathesis, from the API's own OpenAPI document) never get a 5xx.

Served over HTTP on 127.0.0.1 by the tests' API Gateway adapter (moto + the real Redis), so
schemathesis serialises paths, queries and bodies as a real client would. Deterministic:
derandomized, a fixed number of examples per operation and mode.
"""

import json
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from buildlogs.api.app import openapi_json
from tests.support.api import Api, serve_api

pytestmark = [pytest.mark.redis]

EXAMPLES = 25
SCHEMA = schemathesis.openapi.from_dict(json.loads(openapi_json()))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def _bounded_wait(case: Any) -> None:
    """A generated build may exist (ids like "0" repeat): keep valid waits short, invalid ones as they are.

    /events waits 20 s by default: a case without ``wait`` gets 1 s there.
    """
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int) and not isinstance(wait, bool) and 1 < wait <= 20:
        case.query["wait"] = 1
    if wait is None and case.path.endswith("/events"):
        case.query = {**(case.query or {}), "wait": 1}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_generated_requests_never_get_a_server_error(api: Api, operation: Any, mode: GenerationMode) -> None:
    with serve_api() as base_url, requests.Session() as session:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            _bounded_wait(case)
            response = case.call(base_url=base_url, session=session, timeout=10)
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            if response.status_code >= 400:
                body = response.json()
                assert set(body) <= {"error", "message", "field", "reasons"}
                assert {"error", "message"} <= set(body)

        check()


def test_the_documented_operations_are_all_fuzzed() -> None:
    assert {f"{op.method.upper()} {op.path}" for op in OPERATIONS} == {
        "POST /builds",
        "GET /builds",
        "GET /builds/{build_id}",
        "GET /builds/{build_id}/logs",
        "GET /builds/{build_id}/logs/search",
        "GET /builds/{build_id}/logs.txt",
        "GET /builds/{build_id}/events",
        "POST /builds/{build_id}/cancel",
    }
