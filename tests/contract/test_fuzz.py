"""Property-based tests of the running container against the OpenAPI document it serves (schemathesis).

Schemathesis reads /docs.json from the container and generates requests for every operation, both
ones that fit the schema (positive) and ones that break it (negative: wrong types, missing or extra
fields, out-of-range numbers, too many rows). Every answer must be: no 5xx, a JSON body (never a bare
NaN or Infinity), a 4xx in the project's one error shape (the protocol's `{"error"}` under /v2), a
200 from /predict in the prediction shape and from /v2 infer in the protocol's, and a 4xx for every
request the schema says is invalid. At least MIN_CASES requests in all.
"""

from __future__ import annotations

import json
import math

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection

from bentos.classifier.io_schemas import ErrorResponse, Prediction
from bentos.classifier.oip import ErrorBody, InferenceResponse

pytestmark = pytest.mark.container

MIN_CASES = 1000
PREDICT_EXAMPLES = 700  # per generation mode (fitting the schema, breaking it): ~1,400 requests
INFER_EXAMPLES = 300  # per generation mode, on /v2/models/{model_name}/infer
PROBES = ["GET /livez", "GET /readyz", "GET /healthz", "GET /metrics", "GET /v2", "GET /v2/health/live"]
PROBES += ["GET /v2/health/ready"]  # no input to generate
MODEL_ROUTES = ["GET /v2/models/{model_name}", "GET /v2/models/{model_name}/ready"]
INFER = "/v2/models/{model_name}/infer"
SEEN: dict[str, int] = {}


@pytest.fixture(scope="module", name="api_schema")
def fixture_api_schema(server):
    """The container's own OpenAPI document, pointed at the container."""
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json", timeout=30)
    schema.config.update(base_url=server.url)
    return schema


def _no_bare_non_finite(text: str) -> None:
    """json.loads accepts NaN and Infinity; the service must never send them."""

    def refuse(constant: str) -> float:
        raise AssertionError(f"the body contains {constant}: {text[:200]}")

    json.loads(text, parse_constant=refuse)


def check_answer(case, response) -> None:
    """No 5xx; every body is JSON without NaN; 4xx are in the error shape; a 200 from /predict holds
    one valid prediction per row; input the schema calls invalid is refused with a 4xx."""
    case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])
    if case.operation.path == "/metrics":
        return  # Prometheus text, by design
    content_type = (response.headers.get("content-type") or [""])[0]  # schemathesis keeps a list per header
    assert content_type.startswith("application/json"), response.headers
    _no_bare_non_finite(response.text)
    body = response.json()
    protocol = case.operation.path.startswith("/v2")
    if 400 <= response.status_code < 500:
        if protocol:
            assert list(body) == ["error"], body
            ErrorBody.model_validate(body)
        else:
            ErrorResponse.model_validate(body)
    elif case.operation.path.endswith("/infer") and response.status_code == 200:
        answer = InferenceResponse.model_validate(body)
        rows = case.body["inputs"][0]["shape"][0]
        for output in answer.outputs:
            assert output.shape[0] == rows
            assert len(output.data) == rows * (output.shape[1] if len(output.shape) > 1 else 1)
    elif case.operation.path == "/predict" and response.status_code == 200:
        predictions = [Prediction.model_validate(p) for p in body]
        assert len(predictions) == len(case.body["rows"])
        for prediction in predictions:
            assert math.isclose(sum(prediction.probabilities.values()), 1.0, abs_tol=1e-5)


# schemathesis' own pytest integration (`from_fixture`) reads a private pytest attribute that
# pytest 9 no longer has; hypothesis' @given over the operation's strategy is the same generator.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_predictions_get_no_server_error_and_a_json_body(api_schema, mode):
    """Requests to POST /predict generated from the served OpenAPI document (fitting it, and
    breaking it) are answered as `check_answer` says."""
    label = "POST /predict"
    operation = api_schema["/predict"]["POST"]

    @settings(
        max_examples=PREDICT_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(timeout=30)
        SEEN[label] = SEEN.get(label, 0) + 1
        check_answer(case, response)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_protocol_requests_get_no_server_error(api_schema, manifest, mode):
    """Requests to POST /v2/models/{model_name}/infer generated from the document. Fitting ones name the
    served model (a random name is a 404 before the body is read); breaking ones keep whatever they got."""
    label = f"POST {INFER}"
    operation = api_schema[INFER]["POST"]

    @settings(
        max_examples=INFER_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if mode is GenerationMode.POSITIVE:
            case.path_parameters = {"model_name": manifest["name"]}
        response = case.call(timeout=30)
        SEEN[label] = SEEN.get(label, 0) + 1
        check_answer(case, response)

    run()


@pytest.mark.parametrize("label", PROBES)
def test_the_other_operations_answer_as_documented(api_schema, label):
    """The operations without input (probes, metrics, the protocol's server routes), as documented."""
    method, path = label.split(" ")
    case = api_schema[path][method].Case()
    SEEN[label] = SEEN.get(label, 0) + 1
    check_answer(case, case.call(timeout=30))


@pytest.mark.parametrize("label", MODEL_ROUTES)
@pytest.mark.parametrize("named", [True, False], ids=["served-model", "other-model"])
def test_the_model_routes_answer_as_documented(api_schema, manifest, label, named):
    """The protocol's model metadata and readiness, for the served model (200) and another (404)."""
    method, path = label.split(" ")
    case = api_schema[path][method].Case(path_parameters={"model_name": manifest["name"] if named else "other"})
    response = case.call(timeout=30)
    SEEN[label] = SEEN.get(label, 0) + 1
    assert response.status_code == (200 if named else 404)
    check_answer(case, response)


def test_enough_cases_ran():
    """The generated tests above sent at least MIN_CASES requests (runs after them, in file order)."""
    assert sum(SEEN.values()) >= MIN_CASES, SEEN
