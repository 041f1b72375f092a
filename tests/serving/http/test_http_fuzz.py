"""schemathesis fuzzes every operation of the served OpenAPI document against the real server:
no answer may be a 5xx, and each must be one the document declares, in its declared shape.

The cases come from each operation's hypothesis strategy (valid bodies, then invalid ones)
rather than from schemathesis' pytest plugin, whose lazy loader does not run on pytest 9.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skips
from schemathesis import GenerationMode, checks  # noqa: E402

TOKEN = "fuzz-t0ken"
OPERATIONS = ["POST /v1/identify", "POST /v1/landmarks", "GET /v1/model", "GET /v1/guidebook", "GET /v1/guidebook/{label}",
              "GET /healthz", "GET /readyz"]
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 50}
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def fuzzed_url(make_frontend):
    with make_frontend(tokens=(TOKEN,), timeout_s=30.0) as frontend:
        yield f"http://127.0.0.1:{frontend.port}"


@pytest.fixture(scope="module")
def api_schema(fuzzed_url):
    return schemathesis.openapi.from_url(f"{fuzzed_url}/openapi.json")


def test_the_document_lists_every_operation(api_schema):
    assert sorted(result.ok().label for result in api_schema.get_all_operations()) == sorted(OPERATIONS)


# The probes take no input at all: nothing in them can be made invalid.
CASES = [(label, mode) for label in OPERATIONS for mode in EXAMPLES
         if mode is GenerationMode.POSITIVE or label not in ("GET /healthz", "GET /readyz")]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_no_operation_answers_5xx_or_off_schema(api_schema, fuzzed_url, label, mode):
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode], **SETTINGS)
    def fuzz(case):
        case.call_and_validate(base_url=fuzzed_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=60)

    fuzz()


@pytest.mark.parametrize("label", [label for label in OPERATIONS if " /v1/" in label])
def test_without_the_token_the_api_answers_401(api_schema, fuzzed_url, label):
    method, path = label.split(" ", 1)

    @given(case=api_schema[path][method].as_strategy())
    @settings(max_examples=5, **SETTINGS)
    def fuzz(case):
        response = case.call(base_url=fuzzed_url, headers={"Authorization": "Bearer wrong"}, timeout=60)
        assert response.status_code == 401, response.text

    fuzz()


@pytest.fixture(scope="module")
def guidebook_served(guidebook_bundle, beside):
    """A server over the tiny bundle with a guidebook, and its OpenAPI document."""
    from denarius.serving.server import BackgroundServer

    from serving_helpers import server_config

    with BackgroundServer(server_config(guidebook_bundle)) as running, beside(running, tokens=(TOKEN,)) as frontend:
        url = f"http://127.0.0.1:{frontend.port}"
        yield url, schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=[mode.value for mode in EXAMPLES])
def test_guidebook_routes_of_a_bundle_with_a_guidebook(guidebook_served, mode):
    url, document = guidebook_served
    for path in ("/v1/guidebook", "/v1/guidebook/{label}"):
        if path == "/v1/guidebook" and mode is GenerationMode.NEGATIVE:
            continue  # no input to make invalid

        @given(case=document[path]["GET"].as_strategy(generation_mode=mode))
        @settings(max_examples=25, **SETTINGS)
        def fuzz(case):
            case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=60)

        fuzz()
    # Labels the generator would never guess: the PNG answers, checked against the document too.
    for label, kind in (("RIC V Probus 10", "ric"), ("Probus", "emperor")) if mode is GenerationMode.POSITIVE else ():
        case = document["/v1/guidebook/{label}"]["GET"].Case(path_parameters={"label": label}, query={"kind": kind})
        response = case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=60)
        assert response.status_code == 200 and response.headers["content-type"] == ["image/png"]
