"""ASGI middleware that rejects bad prediction requests with one documented 4xx shape.

BentoML validates inputs itself, but its error bodies differ by error kind (and some 4xx come back
as a JSON list), and it reads the whole body before any size check. The guard runs first, on the
raw ASGI stream: it caps the body size while reading, checks the media type, parses JSON and
validates with the same pydantic model the API uses, and only then replays the body downstream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pydantic

from bentos.classifier.io_schemas import error_body, summarize, validation_details

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class RequestGuard:
    """Guard POST requests to `paths`: media type, body size, JSON syntax and request schema."""

    def __init__(
        self,
        app: Any,
        *,
        paths: tuple[str, ...],
        request_model: type[pydantic.BaseModel],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.paths = paths
        self.request_model = request_model
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            await _reject(
                send,
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json, got {media_type or 'none'}.",
            )
            return

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reject(send, 413, "payload_too_large", self._too_large(int(declared)))
            return

        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:  # chunked bodies have no Content-Length
                await _reject(send, 413, "payload_too_large", self._too_large(len(body)))
                return

        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            await _reject(send, 400, "malformed_json", f"The body is not valid JSON: {exc}.")
            return
        try:
            self.request_model.model_validate(payload)
        except pydantic.ValidationError as exc:
            details = validation_details(exc)
            await _reject(send, 422, "invalid_input", summarize(details), details)
            return

        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:  # after the body, behave like the real stream: wait for disconnect
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> str:
        return f"The body is {size} bytes; the limit is {self.max_body_bytes} bytes."


async def _reject(
    send: Send, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> None:
    body = error_body(code, message, details)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
