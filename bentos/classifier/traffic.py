"""A request timeout that lets go of each request as soon as it is answered.

BentoML 1.4's TimeoutMiddleware arms `loop.call_later(timeout, ...)` for every request and never
cancels it. The timer handle keeps the request's context alive (its future, and through the
contextvars the request's OpenTelemetry span with its attributes and locks) for the whole timeout,
answered or not: at 2,000 requests/s and a 10 s timeout that is ~20,000 requests' worth of objects
at any moment. They outlive the young generations, so the collector promotes and rescans them, and
full collections took 100-300 ms (measured with `gc.set_debug(gc.DEBUG_STATS)` and a census of the
oldest generation: lock, Context, deque, BoundedList, TimerHandle, Future, _Span at the top).

This one runs the request under `asyncio.timeout`, stops the clock when the response starts (as
BentoML's does), cancels the timer when the request ends, and answers a timeout with 504 in the
project's error shape. `install()` puts it, wrapped in the error-shape middleware, in place of
BentoML's before the app is built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bentos.classifier.error_shape import ErrorShapeMiddleware
from bentos.classifier.io_schemas import error_body

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class PromptTimeoutMiddleware:
    """Answer 504 when the app has not started its response within `timeout` seconds."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_stop_the_clock(message: dict[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # the response has begun: no timeout for its body
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, send_and_stop_the_clock)
            return
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own TimeoutError, not our deadline: BentoML's 500 handling applies
            # else: asyncio.timeout turned its cancellation into TimeoutError on leaving the block
        if started:  # cannot happen (the clock stops when the response starts); never send twice
            return
        body = error_body("timeout", f"The request was not answered within {self.timeout:g} s.")
        await send(
            {
                "type": "http.response.start",
                "status": 504,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def timeout_in_error_shape(app: Any, timeout: float) -> ErrorShapeMiddleware:
    """The timeout, wrapped by the error shape. BentoML places its timeout outside its concurrency
    cap (and the service's own middlewares inside both), so the error shape put here also reshapes
    the cap's 429 and everything below it."""
    return ErrorShapeMiddleware(PromptTimeoutMiddleware(app, timeout))


def install() -> None:
    """Make BentoML build its apps with `timeout_in_error_shape` instead of its TimeoutMiddleware.

    BentoML looks the class up in `bentoml._internal.server.http.traffic` each time it builds the
    middleware list (bentoml 1.4.39, pinned in requirements.lock); a unit test checks it still does.
    """
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = timeout_in_error_shape  # type: ignore[misc]
