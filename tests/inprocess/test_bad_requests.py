"""Bad requests through the whole stack get their documented 4xx, in the one error shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bentos.classifier.io_schemas import FLOAT32_MAX, ErrorResponse

pytestmark = pytest.mark.inprocess

JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
N_FEATURES = 30  # models/manifest.json n_features; test_the_cases_fit_the_model checks


def body_of(value: str, n: int = N_FEATURES) -> bytes:
    """A one-row request whose values are all the JSON literal `value`."""
    return ('{"rows": [[' + ", ".join([value] * n) + "]]}").encode()


# 100,000 levels of arrays: the parser stops at its depth limit instead of recursing.
DEEP = b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
# (method, path, body, headers, status, error code)
CASES = {
    "deep-nesting": ("POST", "/predict", DEEP, JSON, 400, "malformed_json"),
    "malformed-json": ("POST", "/predict", b'{"rows": [[1.0, 2.0', JSON, 400, "malformed_json"),
    "wrong-content-type": ("POST", "/predict", body_of("1.0"), TEXT, 415, "unsupported_media_type"),
    "wrong-row-length": ("POST", "/predict", body_of("1.0", N_FEATURES - 1), JSON, 422, "invalid_input"),
    "unknown-path": ("GET", "/no-such-path", b"", {}, 404, "not_found"),
    "wrong-method": ("GET", "/predict", b"", {}, 405, "method_not_allowed"),
}


def assert_error(response, status: int, code: str) -> ErrorResponse:
    """The response is `status` with an ErrorResponse body of `code`, strict JSON, honest length."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    error = ErrorResponse.model_validate_json(response.content)
    assert error.error == code
    assert error.message
    return error


def test_the_cases_fit_the_model(manifest, settings):
    """The cases are built for this model and these limits (so each tests what its name says)."""
    assert manifest["n_features"] == N_FEATURES
    assert len(DEEP) < settings["max_body_bytes"]  # reaches the parser, not the size cap


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_request_is_a_documented_4xx(client, case):
    """Each bad request gets its status and the one error shape, whichever layer refuses it."""
    method, path, body, headers, status, code = CASES[case]
    assert_error(client.request(method, path, content=body, headers=headers), status, code)


def test_a_value_beyond_float32_is_located(client):
    """1e39 (finite as JSON, infinite as float32) never reaches the model; the error names the cell."""
    error = assert_error(client.post("/predict", content=body_of("1e39"), headers=JSON), 422, "invalid_input")
    assert [detail.loc for detail in error.details] == [["rows", 0, column] for column in range(N_FEATURES)]


def test_probabilities_that_overflow_are_a_422(client, reference):
    """Inputs inside float32's range whose probabilities are not finite get 422, never a NaN in a body."""
    rows = [[FLOAT32_MAX / 2] * N_FEATURES]
    if np.isfinite(reference.predict(np.asarray(rows, dtype=np.float32))).all():
        pytest.skip("this model's probabilities stay finite for the largest inputs: there is no overflow to refuse")
    response = client.post("/predict", content=json.dumps({"rows": rows}), headers=JSON)
    error = assert_error(response, 422, "invalid_input")
    assert "overflow" in error.message
