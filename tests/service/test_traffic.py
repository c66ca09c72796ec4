"""The request timeout: 504 in the project's shape when late, nothing kept alive once answered."""

from __future__ import annotations

import asyncio

from bentoml._internal.server.base_app import BaseAppFactory

from bentos.classifier.error_shape import ErrorShapeMiddleware
from bentos.classifier.io_schemas import ErrorResponse
from bentos.classifier.traffic import PromptTimeoutMiddleware, install


def _app(delay: float):
    async def app(scope, receive, send):
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(delay)  # the body may take longer than the timeout: the clock has stopped
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _call(app) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send)
    return sent


def test_a_late_request_gets_504_in_the_error_shape():
    """No response started within the timeout: 504, a body in the documented shape."""
    sent = asyncio.run(_call(PromptTimeoutMiddleware(_app(0.5), timeout=0.05)))
    assert sent[0]["status"] == 504
    body = ErrorResponse.model_validate_json(sent[1]["body"])
    assert body.error == "timeout"
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()


def test_the_clock_stops_when_the_response_starts():
    """A response that started in time completes even if its body takes longer than the timeout."""
    sent = asyncio.run(_call(PromptTimeoutMiddleware(_app(0.03), timeout=0.05)))
    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"ok"


def test_an_answered_request_leaves_no_timer_behind():
    """After the request, the loop holds no live timer for it (BentoML's kept one for the whole timeout)."""

    async def scenario() -> int:
        await _call(PromptTimeoutMiddleware(_app(0), timeout=60))
        loop = asyncio.get_running_loop()
        return sum(1 for handle in loop._scheduled if not handle.cancelled())

    assert asyncio.run(scenario()) == 0


def test_install_replaces_bentomls_timeout_middleware():
    """BentoML (the pinned version) builds its middleware list with ours once installed: the error
    shape outermost, then the prompt timeout, then BentoML's concurrency cap."""

    class Factory(BaseAppFactory):
        name = "probe"

    install()
    middlewares = Factory(timeout=1.0, max_concurrency=8).middlewares
    built = middlewares[0].cls(app=None, **middlewares[0].kwargs)
    assert isinstance(built, ErrorShapeMiddleware)
    assert isinstance(built.app, PromptTimeoutMiddleware)
    assert middlewares[1].cls.__name__ == "MaxConcurrencyMiddleware"
