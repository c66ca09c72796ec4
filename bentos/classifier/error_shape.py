"""ASGI middleware that gives every error answer of the service the one documented shape.

The request guard answers bad /predict requests itself, but the server below it has its own error
answers, each in another shape: Starlette's 404 and 405 are plain text, BentoML's 400 is
`{"error", "detail"}`, the 4xx of a BentoML exception is a JSON *list* of one object, its 5xx a
generic `{"error"}`, /readyz's 503 is plain text. This middleware lets every response below 400
through untouched (the hot path costs one comparison per message) and holds back only error
responses: their body is read, and unless it already is an `ErrorResponse` it is replaced by one,
with a stable `error` code per status (STATUS_CODES) and the upstream message where it says
something about the request. An exception that escapes the app becomes a 500 in the same shape and
is raised again, so the server still logs it.

Under the Open Inference Protocol's prefix (/v2) the shape is the protocol's, `{"error": "<sentence>"}`:
the middleware in bentos/classifier/oip.py answers that way, and the errors of the server around it
(the concurrency cap's 429, the timeout's 504) are rewritten to it here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pydantic

from bentos.classifier.io_schemas import ErrorResponse, error_body

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

# The `error` code of each status the server can answer with. docs/api.md has the same table.
STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
    504: "timeout",
}
# 5xx bodies are never passed on: BentoML's say nothing useful, and some would say too much.
SERVER_MESSAGES = {
    500: "The service failed on this request; the error is in the server log.",
    503: "The service cannot take requests now (it is starting, or overloaded): retry shortly.",
    504: "The request was not answered in time: retry shortly.",
}
CLIENT_MESSAGES = {429: "Too many requests are in flight: retry shortly."}
# Headers that describe the original body, not the one sent in its place.
BODY_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding", b"transfer-encoding"})
# Liveness and readiness probes: their 200 body becomes this JSON (their status is what probes read).
PROBE_PATHS = ("/livez", "/readyz", "/healthz")
PROBE_BODY = b'{"status":"ok"}'
MAX_MESSAGE_CHARS = 300
MAX_DETAILS = 50


class _Shaped(ErrorResponse):
    """ErrorResponse with nothing else in it: what a body must be to pass unchanged."""

    model_config = pydantic.ConfigDict(extra="forbid")


class _ProtocolShaped(pydantic.BaseModel):
    """The Open Inference Protocol's error body, and nothing else in it."""

    model_config = pydantic.ConfigDict(extra="forbid")
    error: str


PROTOCOL_PREFIX = "/v2"


class ErrorShapeMiddleware:
    """Rewrite every 4xx and 5xx response not already in the error shape; leave the rest alone."""

    def __init__(
        self,
        app: Any,
        *,
        skip_paths: tuple[str, ...] = ("/metrics",),
        probe_paths: tuple[str, ...] = PROBE_PATHS,
        protocol_prefix: str = PROTOCOL_PREFIX,
        max_held_bytes: int = 65536,
    ) -> None:
        self.app = app
        self.skip_paths = skip_paths
        self.probe_paths = probe_paths
        self.protocol_prefix = protocol_prefix
        # An error body past this size is not read for its message (it is still replaced).
        self.max_held_bytes = max_held_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] | None = None  # the start of an error response, sent once its body is complete
        chunks: list[bytes] = []
        size = 0
        started = False  # something was sent on: no other answer is possible any more

        probe = scope["path"] in self.probe_paths
        path = scope["path"]
        protocol = path == self.protocol_prefix or path.startswith(self.protocol_prefix + "/")

        async def send_shaped(message: dict[str, Any]) -> None:
            nonlocal held, size, started
            if held is None:
                if message["type"] == "http.response.start":
                    if message["status"] >= 400:
                        held = message
                        return
                    started = True
                    if probe:  # BentoML's probes answer a bare newline: answer JSON instead
                        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in BODY_HEADERS]
                        await _send(send, message["status"], headers, PROBE_BODY)
                        return
                elif probe and started:
                    return  # the probe's own body, replaced above
                await send(message)
                return
            if started or message["type"] != "http.response.body":
                return  # trailers and the like belong to the body being replaced
            chunk = message.get("body", b"")
            if size + len(chunk) <= self.max_held_bytes:
                chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                started = True
                held_body = b"".join(chunks) if size <= self.max_held_bytes else None
                await self._send_error(send, held, held_body, protocol)

        try:
            await self.app(scope, receive, send_shaped)
        except Exception:
            if not started:
                started = True
                await _send(send, 500, [], shaped_body(500, b"", protocol=protocol))
            raise
        if held is not None and not started:  # the app ended an error response without its last body
            await self._send_error(send, held, None, protocol)

    async def _send_error(self, send: Send, start: dict[str, Any], body: bytes | None, protocol: bool) -> None:
        """Send the held error response: unchanged when already shaped, else rewritten."""
        status = start["status"]
        headers = list(start.get("headers", []))
        if body is not None and _is_shaped(body, protocol):
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        kept = [(k, v) for k, v in headers if k.lower() not in BODY_HEADERS]
        await _send(send, status, kept, shaped_body(status, body or b"", content_type, protocol=protocol))


def shaped_body(
    status: int, body: bytes, content_type: bytes = b"application/json", *, protocol: bool = False
) -> bytes:
    """The error body for an answer of `status` whose original body was `body`: an ErrorResponse, or
    the protocol's `{"error": ...}` under /v2."""
    code = error_code(status)
    if status >= 500:
        message, details = SERVER_MESSAGES.get(status) or _phrase(status) + ".", []
    else:
        upstream, details = _upstream_message(body, content_type)
        message = upstream or CLIENT_MESSAGES.get(status) or _phrase(status) + "."
    if protocol:
        return _ProtocolShaped(error=message).model_dump_json().encode()
    return error_body(code, message, details)


def error_code(status: int) -> str:
    """The `error` code for `status`: from STATUS_CODES, else the reason phrase in snake_case."""
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    try:
        return re.sub(r"\W+", "_", HTTPStatus(status).phrase.lower()).strip("_")
    except ValueError:
        return f"http_{status}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _is_shaped(body: bytes, protocol: bool = False) -> bool:
    try:
        (_ProtocolShaped if protocol else _Shaped).model_validate_json(body)
    except pydantic.ValidationError:
        return False
    return True


def _upstream_message(body: bytes, content_type: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    """What the original body said, from the shapes BentoML and Starlette use: `{"error": ...}`,
    `[{"error": ...}]`, `{"detail": ...}` (with pydantic errors as details), or plain text."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        if content_type.split(b";")[0].strip().lower() != b"text/plain":
            return None, []
        return _clean(body.decode("utf-8", "replace")), []
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, str):
        return _clean(data), []
    if not isinstance(data, dict):
        return None, []
    message = next((v for k in ("error", "message", "detail") if isinstance(v := data.get(k), str)), None)
    return (_clean(message) if message else None), _details(data.get("detail"))


def _details(errors: Any) -> list[dict[str, Any]]:
    """pydantic-style errors (a list of {loc, msg}) as ErrorDetail dicts; anything else is dropped."""
    if not isinstance(errors, list):
        return []
    details = []
    for error in errors[:MAX_DETAILS]:
        if isinstance(error, dict) and isinstance(error.get("msg"), str) and isinstance(error.get("loc"), list):
            loc = [p if isinstance(p, int) and not isinstance(p, bool) else _clean(str(p)) or "" for p in error["loc"]]
            details.append({"loc": loc, "msg": _clean(error["msg"]) or ""})
    return details


def _clean(text: str) -> str | None:
    """One line, cut short, encodable (a JSON escape can decode to a lone surrogate); None when empty."""
    text = " ".join(text.encode("utf-8", "replace").decode("utf-8").split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text or None


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
