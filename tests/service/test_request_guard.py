"""The request guard answers every bad request with the documented 4xx shape and passes good ones."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bentos.classifier.io_schemas import ErrorResponse, make_request_model
from bentos.classifier.request_guard import RequestGuard

N_FEATURES, MAX_ROWS, MAX_BODY = 3, 4, 2048
GOOD = {"rows": [[1.0, 2.0, 3.0]]}


async def echo(request: Request) -> JSONResponse:
    """Stands in for the BentoML endpoint: returns how many rows it received."""
    return JSONResponse({"received": len((await request.json())["rows"])})


@pytest.fixture(name="client")
def fixture_client():
    app = Starlette(routes=[Route("/predict", echo, methods=["POST"]), Route("/other", echo, methods=["POST"])])
    guarded = RequestGuard(
        app, paths=("/predict",), request_model=make_request_model(N_FEATURES, MAX_ROWS), max_body_bytes=MAX_BODY
    )
    return TestClient(guarded)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = ErrorResponse.model_validate(response.json())
    assert body.error == code
    assert body.message
    return response.json()


def test_good_request_reaches_the_endpoint_with_its_body(client):
    """A valid body is replayed unchanged to the endpoint behind the guard."""
    response = client.post("/predict", json={"rows": [[1, 2, 3], [4, 5, 6]]})
    assert response.status_code == 200
    assert response.json() == {"received": 2}


def test_wrong_content_type_is_415(client):
    """Only application/json is accepted (a charset parameter is fine)."""
    assert_error(
        client.post("/predict", content=json.dumps(GOOD), headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    ok = client.post("/predict", content=json.dumps(GOOD), headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_missing_content_type_is_415(client):
    """A body without any Content-Type is refused, not guessed."""
    assert_error(client.post("/predict", content=b"{}", headers={"content-type": ""}), 415, "unsupported_media_type")


def test_malformed_json_is_400(client):
    """Broken JSON, and bytes that are not UTF-8, are malformed_json."""
    assert_error(
        client.post("/predict", content=b'{"rows": [', headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_error(
        client.post("/predict", content=b"\xff\xfe", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )


def test_oversized_body_is_413_by_declared_length(client):
    """A Content-Length over the limit is refused before the body is read."""
    body = json.dumps({"rows": [[1.0, 2.0, 3.0]] * 400})
    assert len(body) > MAX_BODY
    assert_error(
        client.post("/predict", content=body, headers={"content-type": "application/json"}), 413, "payload_too_large"
    )


def test_oversized_chunked_body_is_413(client):
    """A body streamed without Content-Length is cut off once it passes the limit."""

    def chunks():
        yield b'{"rows": ['
        for _ in range(300):
            yield b"[1.0, 2.0, 3.0],"
        yield b"[1.0, 2.0, 3.0]]}"

    assert_error(
        client.post("/predict", content=chunks(), headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )


@pytest.mark.parametrize(
    ("body", "first_loc"),
    [
        ('{"rows": []}', ["rows"]),
        ('{"rows": [[1, 2]]}', ["rows", 0]),
        ('{"rows": [[1, "x", 3]]}', ["rows", 0, 1]),
        ('{"rows": [[1, NaN, 3]]}', ["rows", 0, 1]),
        ('{"rows": [[1, 2, Infinity]]}', ["rows", 0, 2]),
        ('{"instances": [[1, 2, 3]]}', ["rows"]),
        ("[[1, 2, 3]]", []),
        (json.dumps({"rows": [[1, 2, 3]] * (MAX_ROWS + 1)}), ["rows"]),
    ],
    ids=[
        "empty-batch",
        "wrong-width",
        "non-numeric",
        "nan",
        "infinity",
        "missing-field",
        "not-an-object",
        "over-batch-limit",
    ],
)
def test_invalid_input_is_422_naming_the_problem(client, body, first_loc):
    """Schema violations are 422 invalid_input with the location of the first problem."""
    error = assert_error(
        client.post("/predict", content=body, headers={"content-type": "application/json"}), 422, "invalid_input"
    )
    assert error["details"][0]["loc"] == first_loc


def test_other_paths_and_methods_pass_through(client):
    """The guard only inspects POST to the guarded paths."""
    assert client.post("/other", json=GOOD).status_code == 200
    assert client.get("/predict").status_code == 405
