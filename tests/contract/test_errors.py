"""Bad input never gets a 5xx: every case is a documented 4xx, and the container stays healthy."""

from __future__ import annotations

import json

import pytest

from bentos.classifier.io_schemas import ErrorResponse
from bentos.classifier.model_files import load_settings

pytestmark = pytest.mark.container

SETTINGS = load_settings()
JSON = {"content-type": "application/json"}


def row(n: int = 30, value: str = "1.0") -> str:
    return "[" + ", ".join([value] * n) + "]"


CASES = {
    "malformed-json": ('{"rows": [[1.0, 2.0', JSON, 400, "malformed_json"),
    "not-utf8": (b"\xff\xfe\x00", JSON, 400, "malformed_json"),
    "wrong-content-type": ('{"rows": [' + row() + "]}", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
    "form-content-type": (
        "rows=1",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    "missing-field": ('{"instances": [' + row() + "]}", JSON, 422, "invalid_input"),
    "too-few-features": ('{"rows": [' + row(29) + "]}", JSON, 422, "invalid_input"),
    "too-many-features": ('{"rows": [' + row(31) + "]}", JSON, 422, "invalid_input"),
    "non-numeric": ('{"rows": [' + row(30, '"abc"') + "]}", JSON, 422, "invalid_input"),
    "nan": ('{"rows": [' + row(30, "NaN") + "]}", JSON, 422, "invalid_input"),
    "infinity": ('{"rows": [' + row(30, "-Infinity") + "]}", JSON, 422, "invalid_input"),
    "empty-batch": ('{"rows": []}', JSON, 422, "invalid_input"),
    "batch-over-limit": (
        '{"rows": [' + ", ".join([row()] * (SETTINGS["max_rows_per_request"] + 1)) + "]}",
        JSON,
        422,
        "invalid_input",
    ),
    "not-an-object": ("[" + row() + "]", JSON, 422, "invalid_input"),
    "body-over-size-limit": ('{"rows": [' + ", ".join([row()] * 8000) + "]}", JSON, 413, "payload_too_large"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_a_documented_4xx(client, case):
    """Each bad request gets its status and the one error shape, naming the problem."""
    body, headers, status, code = CASES[case]
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate(response.json())
    assert error.error == code
    assert error.message


def test_body_size_limit_is_the_configured_one():
    """The oversized case really is over the configured limit (so the test means something)."""
    assert len(CASES["body-over-size-limit"][0]) > SETTINGS["max_body_bytes"]


def test_the_error_names_the_offending_feature(client):
    """A bad value deep in a batch is located: row and column."""
    rows = [json.loads(row())] * 3
    rows[2] = [1.0] * 29 + ["x"]
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 422
    assert response.json()["details"][0]["loc"] == ["rows", 2, 29]


def test_container_is_healthy_after_bad_input(client, server):
    """After every bad request above, the service is still ready and still answers correctly."""
    for body, headers, _, _ in CASES.values():
        assert client.post("/predict", content=body, headers=headers).status_code < 500
    assert client.get("/readyz").status_code == 200
    good = client.post("/predict", json={"rows": [json.loads(row())]})
    assert good.status_code == 200
    assert server.inspect()["State"]["Running"]
