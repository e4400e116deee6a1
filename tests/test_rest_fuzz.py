"""REST torture: requests generated from the OpenAPI description the server itself serves.

schemathesis turns /openapi.json into hypothesis strategies: valid operands (positive) and
everything the description forbids (negative: missing, wrong type, odd encodings). Whatever
arrives, the answer is never a 5xx and always JSON in the documented shape. Bounded:
EXAMPLES per operation and mode, no shrinking database, well under a minute.
"""

from __future__ import annotations

import sys

import pytest
import requests
import schemathesis
from helpers import REST_READY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from labkit.procs import REPO, Proc, free_port

EXAMPLES = 40
OPERATIONS = ("/add", "/sub", "/mul", "/div")
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def base_url():
    port = free_port()
    proc = Proc([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(REPO / "rest"))
    try:
        proc.wait_for(REST_READY, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop(timeout=3)
    assert "Traceback" not in proc.output


@pytest.fixture(scope="module")
def api_schema(base_url):
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("path", OPERATIONS)
def test_fuzzed_requests_never_get_a_5xx_and_always_documented_json(api_schema, base_url, session, path, mode):
    operation = api_schema[path]["GET"]
    statuses: list[int] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def exchange(case):
        response = case.call(base_url=base_url, session=session, timeout=10)
        statuses.append(response.status_code)
        assert response.status_code < 500, f"{case.as_curl_command()} -> {response.status_code} {response.text}"
        case.validate_response(response, checks=[content_type_conformance, response_schema_conformance])

    exchange()
    assert statuses and all(s < 500 for s in statuses)
    if mode is GenerationMode.NEGATIVE:
        assert any(s == 400 for s in statuses), statuses  # the bad input was noticed, not computed with


@FUZZ_SETTINGS
@given(path=st.sampled_from(OPERATIONS), a=st.text(max_size=30), b=st.text(max_size=30))
def test_arbitrary_text_operands_get_200_or_400_json(base_url, session, path, a, b):
    response = session.get(f"{base_url}{path}", params={"a": a, "b": b}, timeout=10)
    assert response.status_code in (200, 400), response.text
    body = response.json()
    assert set(body) == ({"result"} if response.status_code == 200 else {"error"}), body
