"""Every error answer, whoever made it, leaves in the one error shape; nothing else is touched."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bentos.classifier.error_shape import STATUS_CODES, ErrorShapeMiddleware, error_code
from bentos.classifier.io_schemas import ErrorResponse, error_body, make_request_model
from bentos.classifier.request_guard import RequestGuard

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SHAPED = error_body("payload_too_large", "The body is 9 bytes; the limit is 8 bytes.")


async def bentoml_exception_4xx(request: Request) -> Response:
    """BentoML answers a 4xx BentoMLException with a JSON list: `({"error": str(exc)},)`."""
    return JSONResponse([{"error": "rows [0]: the model's probabilities overflow"}], status_code=422)


async def bentoml_validation_400(request: Request) -> Response:
    """BentoML's own input validation: `{"error", "detail": [pydantic errors]}`."""
    detail = [{"type": "missing", "loc": ["rows"], "msg": "Field required"}]
    return JSONResponse({"error": "1 validation error for predict__Input", "detail": detail}, status_code=400)


async def bentoml_5xx(request: Request) -> Response:
    return JSONResponse({"error": "An unexpected error has occurred, please check the server log."}, status_code=503)


async def not_ready(request: Request) -> Response:
    """/readyz before the model is loaded: Starlette's HTTPException as plain text."""
    return PlainTextResponse("Service is not ready because .__is_ready__() returns False.", status_code=503)


async def already_shaped(request: Request) -> Response:
    return Response(SHAPED, status_code=413, media_type="application/json", headers={"x-request-id": "7"})


async def nan_body(request: Request) -> Response:
    return Response(b'{"error": NaN}', status_code=400, media_type="application/json")


async def surrogate(request: Request) -> Response:
    return Response(b'{"error": "bad \\ud800 key"}', status_code=400, media_type="application/json")


async def streamed_error(request: Request) -> Response:
    async def chunks():
        yield b'{"error": "streamed '
        yield b'in two parts"}'

    return StreamingResponse(chunks(), status_code=409, media_type="application/json")


async def huge_error(request: Request) -> Response:
    return PlainTextResponse("x" * 100_000, status_code=400)


async def teapot(request: Request) -> Response:
    return PlainTextResponse("short and stout", status_code=418)


async def boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def streamed_ok(request: Request) -> Response:
    async def chunks():
        yield b'{"ok": '
        yield b"true}"

    return StreamingResponse(chunks(), media_type="application/json")


async def metrics(request: Request) -> Response:
    return PlainTextResponse("# metrics unavailable", status_code=500)


async def live(request: Request) -> Response:
    """BentoML's /livez: 200 with a bare newline as text."""
    return PlainTextResponse("\n")


async def echo(request: Request) -> Response:
    return JSONResponse({"received": len((await request.json())["rows"])})


ROUTES = {
    "/exception-4xx": bentoml_exception_4xx,
    "/validation-400": bentoml_validation_400,
    "/overloaded": bentoml_5xx,
    "/readyz": not_ready,
    "/shaped": already_shaped,
    "/nan": nan_body,
    "/surrogate": surrogate,
    "/streamed-error": streamed_error,
    "/huge-error": huge_error,
    "/teapot": teapot,
    "/boom": boom,
    "/ok": streamed_ok,
    "/metrics": metrics,
    "/livez": live,
}


@pytest.fixture(name="client")
def fixture_client():
    routes = [Route(path, endpoint) for path, endpoint in ROUTES.items()]
    app = Starlette(routes=[*routes, Route("/predict", echo, methods=["POST"])])
    guarded = RequestGuard(app, paths=("/predict",), request_model=make_request_model(3, 4), max_body_bytes=64)
    return TestClient(ErrorShapeMiddleware(guarded), raise_server_exceptions=False)


def assert_shaped(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body = json.loads(response.content, parse_constant=lambda literal: pytest.fail(f"{literal} in the body"))
    assert set(body) == {"error", "message", "details"}
    assert ErrorResponse.model_validate(body).error == code
    assert body["message"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message"),
    [
        ("GET", "/exception-4xx", 422, "invalid_input", "rows [0]: the model's probabilities overflow"),
        ("GET", "/validation-400", 400, "bad_request", "1 validation error for predict__Input"),
        ("GET", "/overloaded", 503, "service_unavailable", "retry shortly"),
        ("GET", "/readyz", 503, "service_unavailable", "retry shortly"),
        ("GET", "/no-such-path", 404, "not_found", "Not Found"),
        ("GET", "/predict", 405, "method_not_allowed", "Method Not Allowed"),
        ("GET", "/nan", 400, "bad_request", "Bad Request."),
        ("GET", "/surrogate", 400, "bad_request", "bad ? key"),
        ("GET", "/streamed-error", 409, "conflict", "streamed in two parts"),
        ("GET", "/huge-error", 400, "bad_request", "Bad Request."),
        ("GET", "/teapot", 418, "i_m_a_teapot", "short and stout"),
        ("GET", "/boom", 500, "internal_error", "server log"),
    ],
    ids=[
        "bentoml-4xx-list",
        "bentoml-validation-400",
        "bentoml-5xx",
        "plain-text-503",
        "starlette-404",
        "starlette-405",
        "nan-in-body",
        "lone-surrogate",
        "streamed-in-chunks",
        "over-the-held-size",
        "unlisted-status",
        "uncaught-exception",
    ],
)
def test_foreign_error_bodies_are_rewritten(client, method, path, status, code, message):
    """Each odd body BentoML or Starlette produces becomes an ErrorResponse with the status kept."""
    body = assert_shaped(client.request(method, path), status, code)
    assert message in body["message"]


def test_5xx_bodies_are_not_passed_on(client):
    """A 5xx says the project's sentence, not BentoML's (which only says to read the log)."""
    body = assert_shaped(client.get("/overloaded"), 503, "service_unavailable")
    assert "unexpected error" not in body["message"]


def test_pydantic_errors_become_details(client):
    """BentoML's validation errors keep their locations."""
    body = assert_shaped(client.get("/validation-400"), 400, "bad_request")
    assert body["details"] == [{"loc": ["rows"], "msg": "Field required"}]


def test_other_headers_survive_the_rewrite(client):
    """Only the headers about the body change: 405 keeps its Allow header."""
    response = client.get("/predict")
    assert response.headers["allow"] == "POST"


def test_shaped_errors_pass_unchanged(client):
    """An answer already in the shape (the guard's, the timeout's) is sent byte for byte."""
    response = client.get("/shaped")
    assert response.status_code == 413
    assert response.content == SHAPED
    assert response.headers["x-request-id"] == "7"


def test_the_guards_answers_pass_unchanged(client):
    """Behind the middleware, the guard's 4xx keep their specific codes."""
    assert_shaped(
        client.post("/predict", content=b"[" * 5, headers={"content-type": "application/json"}), 400, "malformed_json"
    )
    assert_shaped(
        client.post("/predict", content=b"1" * 65, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    assert_shaped(
        client.post("/predict", content=b"{}", headers={"content-type": "text/plain"}), 415, "unsupported_media_type"
    )
    assert client.post(
        "/predict", content=b'{"rows":[[1,2,3]]}', headers={"content-type": "application/json"}
    ).json() == {"received": 1}


def test_success_and_metrics_pass_untouched(client):
    """2xx answers and /metrics (any status) are not rewritten."""
    assert client.get("/ok").json() == {"ok": True}
    metrics = client.get("/metrics")
    assert metrics.status_code == 500
    assert metrics.text == "# metrics unavailable"


def test_success_streams_without_buffering():
    """A 2xx response reaches the server message by message, as the app sent it."""
    sent = asyncio.run(_call(ErrorShapeMiddleware(_streaming_app(200))))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert [m.get("more_body") for m in sent[1:]] == [True, False]


def test_an_exception_after_a_response_started_is_raised_without_a_second_answer():
    """Once a 2xx has started, a failure can only be raised: nothing is sent after it."""

    async def failing(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("a bug")

    sent: list[dict] = []
    with pytest.raises(RuntimeError):
        asyncio.run(_call(ErrorShapeMiddleware(failing), sent))
    assert [m["type"] for m in sent] == ["http.response.start"]


def test_an_error_response_ended_early_is_still_answered():
    """An app that returns mid-way through an error body still gets a complete shaped answer."""

    async def unfinished(scope, receive, send):
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"par", "more_body": True})

    sent = asyncio.run(_call(ErrorShapeMiddleware(unfinished)))
    assert sent[0]["status"] == 400
    assert ErrorResponse.model_validate_json(sent[1]["body"]).error == "bad_request"


def test_every_code_is_documented():
    """Each status code's `error` is listed in ErrorResponse's description and in docs/api.md."""
    description = ErrorResponse.model_fields["error"].description
    docs = DOCS.read_text()
    for code in STATUS_CODES.values():
        assert code in description
        assert f"`{code}`" in docs


def test_unknown_statuses_get_a_code():
    """A status outside the table still gets a stable, readable code."""
    assert error_code(409) == "conflict"
    assert error_code(599) == "http_599"


def _streaming_app(status: int):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    return app


async def _call(app, sent: list[dict] | None = None) -> list[dict]:
    sent = [] if sent is None else sent

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    return sent


def test_probes_answer_json(client):
    """A probe's 200 (a bare newline from BentoML) becomes {"status": "ok"}; its status is kept."""
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json() == {"status": "ok"}
