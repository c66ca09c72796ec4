"""The request guard answers every bad request with the documented 4xx shape and passes good ones."""

from __future__ import annotations

import json
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bentos.classifier.io_schemas import FLOAT32_MAX, ErrorResponse, make_request_model
from bentos.classifier.model_files import load_settings
from bentos.classifier.request_guard import RequestGuard

# The configured body limit: the pathological bodies below must get past it to reach the parser.
N_FEATURES, MAX_ROWS, MAX_BODY = 3, 4, load_settings()["max_body_bytes"]
GOOD = {"rows": [[1.0, 2.0, 3.0]]}
JSON = {"content-type": "application/json"}
# Far below the 10 s the unguarded parser hung for; the guard answers these in milliseconds.
QUICK_S = 1.0


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
    assert int(response.headers["content-length"]) == len(response.content)
    body = strict_json(response.content)
    assert ErrorResponse.model_validate(body).error == code
    assert body["message"]
    return body


def strict_json(content: bytes):
    """Parse as RFC 8259 JSON: NaN and Infinity, which Python's parser accepts, are errors."""

    def refuse(literal):
        raise ValueError(f"{literal} is not JSON")

    return json.loads(content, parse_constant=refuse)


def post_timed(client, content, headers=JSON):
    started = time.perf_counter()
    response = client.post("/predict", content=content, headers=headers)
    assert time.perf_counter() - started < QUICK_S
    return response


def body_of(values: str) -> bytes:
    """A one-row request whose N_FEATURES values are the JSON literal `values`."""
    return ('{"rows": [[' + ", ".join([values] * N_FEATURES) + "]]}").encode()


def test_good_request_reaches_the_endpoint_with_its_body(client):
    """A valid body is replayed unchanged to the endpoint behind the guard."""
    response = client.post("/predict", json={"rows": [[1, 2, 3], [4, 5, 6]]})
    assert response.status_code == 200
    assert response.json() == {"received": 2}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON; Charset="UTF-8"',
        "application/json;charset=utf8",
    ],
)
def test_json_content_types_are_accepted(client, content_type):
    """application/json, in any case, with no charset or a UTF-8 one."""
    assert client.post("/predict", content=json.dumps(GOOD), headers={"content-type": content_type}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": ""},
        {"content-type": "application/json; charset=latin-1"},
        {"content-type": "application/json; charset=utf-16"},
        {"content-type": "application/json, text/plain"},
        [("content-type", "application/json"), ("content-type", "application/json")],
        [("content-type", "application/json"), ("content-type", "text/plain")],
        {"content-type": "application/json", "content-encoding": "gzip"},
    ],
    ids=[
        "text-plain",
        "missing",
        "charset-latin-1",
        "charset-utf-16",
        "comma-joined",
        "duplicated",
        "conflicting",
        "compressed",
    ],
)
def test_unacceptable_headers_are_415(client, headers):
    """Only one Content-Type, application/json in UTF-8, uncompressed: anything else is 415."""
    assert_error(post_timed(client, json.dumps(GOOD), headers), 415, "unsupported_media_type")


def test_the_media_type_is_judged_before_the_size(client):
    """An oversized body of the wrong type is 415: the documented order is headers, size, bytes, content."""
    body = b"x" * (MAX_BODY + 1)
    assert_error(post_timed(client, body, {"content-type": "text/plain"}), 415, "unsupported_media_type")


def test_a_repeated_content_type_is_named_in_the_message(client):
    """The two header lines are seen as two (ASGI keeps them apart), and the message says so."""
    headers = [("content-type", "application/json"), ("content-type", "text/plain")]
    error = assert_error(
        client.post("/predict", content=json.dumps(GOOD), headers=headers), 415, "unsupported_media_type"
    )
    assert "not 2" in error["message"]
    assert "text/plain" in error["message"]


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b'{"rows": [', "EOF"),
        (b"", "empty"),
        (b"  \r\n\t ", "empty"),
        (b"[" * 5_000 + b"]" * 5_000, "recursion"),
        (b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "recursion"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "recursion"),
        (b'{"rows": [[' + b"1" * 5_000 + b", 1, 1]]}", "number out of range"),
        (b'{"rows": [[nan, 1, 1]]}', "expected ident"),
        (body_of("1") + b" trailing", "trailing characters"),
        (json.dumps(GOOD).encode("utf-16"), "byte-order mark"),
        (json.dumps(GOOD).encode("utf-16-le"), "UTF-16"),
        (json.dumps(GOOD).encode("utf-32"), "byte-order mark"),
        (json.dumps(GOOD).encode("utf-32-be"), "UTF-16 or UTF-32"),
        (b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), "byte-order mark"),
        (b"\xff\xfe", "byte-order mark"),
        ('{"rows": [[1, 2, 3]], "caf\u00e9": 1}'.encode("latin-1"), "unicode"),
        (b'{"rows": [[1, 2, 3]], "\\ud800": 1}', "hex escape"),
    ],
    ids=[
        "truncated",
        "empty",
        "whitespace",
        "nested-5000",
        "nested-100000",
        "nested-objects-100000",
        "integer-5000-digits",
        "lowercase-nan",
        "trailing-garbage",
        "utf-16-with-bom",
        "utf-16-without-bom",
        "utf-32-with-bom",
        "utf-32-without-bom",
        "utf-8-bom",
        "utf-16-bom-only",
        "latin-1-byte",
        "lone-surrogate-escape",
    ],
)
def test_bytes_that_are_not_utf8_json_are_400_at_once(client, content, hint):
    """Whatever the parser refuses is 400 malformed_json, answered quickly, naming the likely cause."""
    assert len(content) <= MAX_BODY
    error = assert_error(post_timed(client, content), 400, "malformed_json")
    assert hint.lower() in error["message"].lower()


@pytest.mark.parametrize(
    ("content", "first_loc"),
    [
        (b'{"rows": []}', ["rows"]),
        (b'{"rows": [[1, 2]]}', ["rows", 0]),
        (b'{"rows": [[1, "x", 3]]}', ["rows", 0, 1]),
        (b'{"rows": [[1, true, 3]]}', ["rows", 0, 1]),
        (b'{"rows": [[1, NaN, 3]]}', ["rows", 0, 1]),
        (b'{"rows": [[1, 2, Infinity]]}', ["rows", 0, 2]),
        (b'{"rows": [[-Infinity, 2, 3]]}', ["rows", 0, 0]),
        (body_of("1e39"), ["rows", 0, 0]),
        (body_of("-1e39"), ["rows", 0, 0]),
        (body_of("3.5e38"), ["rows", 0, 0]),
        (body_of("1e400"), ["rows", 0, 0]),
        (body_of("9" * 400), ["rows", 0, 0]),
        (b'{"rows": [[[[[[1]]]]]]}', ["rows", 0, 0]),
        (b'{"instances": [[1, 2, 3]]}', ["rows"]),
        (b'{"rows": [[1, 2, 3]], "extra": 1}', ["extra"]),
        (b"[[1, 2, 3]]", []),
        (b"null", []),
        (b'"rows"', []),
        (json.dumps({"rows": [[1, 2, 3]] * (MAX_ROWS + 1)}).encode(), ["rows"]),
    ],
    ids=[
        "empty-batch",
        "wrong-width",
        "non-numeric",
        "boolean",
        "nan",
        "infinity",
        "minus-infinity",
        "beyond-float32",
        "beyond-float32-negative",
        "just-beyond-float32",
        "beyond-float64",
        "integer-400-digits",
        "nested-in-a-row",
        "missing-field",
        "unknown-field",
        "not-an-object",
        "null",
        "a-string",
        "over-batch-limit",
    ],
)
def test_invalid_input_is_422_naming_the_problem(client, content, first_loc):
    """Schema violations are 422 invalid_input with the location of the first problem."""
    error = assert_error(post_timed(client, content), 422, "invalid_input")
    assert error["details"][0]["loc"] == first_loc


def test_every_value_beyond_float32_is_located(client):
    """1e39 is finite for JSON and float64 but infinite as float32: each one is named, none reaches the model."""
    error = assert_error(client.post("/predict", content=body_of("1e39"), headers=JSON), 422, "invalid_input")
    assert [d["loc"] for d in error["details"]] == [["rows", 0, i] for i in range(N_FEATURES)]
    assert "float32" in error["details"][0]["msg"]


def test_float32_extremes_are_accepted(client):
    """The largest finite float32, either sign, is a valid value."""
    body = {"rows": [[FLOAT32_MAX, -FLOAT32_MAX, 0.0]]}
    assert client.post("/predict", content=json.dumps(body), headers=JSON).status_code == 200


def test_oversized_body_is_413_by_declared_length(client):
    """A Content-Length over the limit is refused before the body is read."""
    body = json.dumps({"rows": [[1.0, 2.0, 3.0]] * 70_000})
    assert len(body) > MAX_BODY
    assert_error(post_timed(client, body), 413, "payload_too_large")


def test_oversized_chunked_body_is_413(client):
    """A body streamed without Content-Length is cut off once it passes the limit."""
    chunk = b"[1.0, 2.0, 3.0]," * 1_000

    def chunks():
        yield b'{"rows": ['
        for _ in range(MAX_BODY // len(chunk) + 1):
            yield chunk
        yield b"[1.0, 2.0, 3.0]]}"

    assert_error(post_timed(client, chunks()), 413, "payload_too_large")


def test_a_chunked_body_within_the_limit_is_joined_and_replayed(client):
    """A body that arrives in several messages reaches the endpoint whole."""

    def chunks():
        yield b'{"rows": ['
        yield b"[1, 2, 3],"
        yield b"[4, 5, 6]]}"

    response = client.post("/predict", content=chunks(), headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"received": 2}


def test_other_paths_and_methods_pass_through(client):
    """The guard only inspects POST to the guarded paths."""
    assert client.post("/other", json=GOOD).status_code == 200
    assert client.get("/predict").status_code == 405


def _answering_client(answer) -> TestClient:
    app = Starlette(routes=[Route("/predict", echo, methods=["POST"])])
    request_model = make_request_model(N_FEATURES, 4)
    guarded = RequestGuard(app, paths=("/predict",), request_model=request_model, max_body_bytes=1 << 20, answer=answer)
    return TestClient(guarded)


def test_with_answer_the_guard_answers_valid_requests_itself():
    """`answer` gets the validated request (parsed once) and its (status, body) is the response;
    invalid requests never reach it."""
    seen = []

    async def answer(request):
        seen.append(request)
        return 200, json.dumps({"rows": len(request.rows)}).encode()

    client = _answering_client(answer)
    response = client.post("/predict", content=body_of("1.5"), headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"rows": 1}
    assert int(response.headers["content-length"]) == len(response.content)
    assert seen[0].rows == [[1.5] * N_FEATURES]
    assert client.post("/predict", content=b'{"rows": []}', headers=JSON).status_code == 422
    assert len(seen) == 1


def test_an_answer_of_none_falls_through_to_the_app():
    """Before the model is loaded `answer` returns None and the app behind the guard answers."""

    async def not_ready(request):
        return None

    response = _answering_client(not_ready).post("/predict", content=body_of("1.5"), headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"received": 1}
