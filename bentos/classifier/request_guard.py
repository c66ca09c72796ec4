"""ASGI middleware that rejects bad prediction requests with one documented 4xx shape.

BentoML validates inputs itself, but its error bodies differ by error kind (and some 4xx come back
as a JSON list), and it reads the whole body before any size check. The guard runs first, on the
raw ASGI stream: it checks the headers, caps the body size while reading, parses and validates the
body in one call, and only then replays the body downstream.

The body is checked with `model_validate_json`, the same pydantic-core parser BentoML runs on it
next: what the guard lets through, BentoML parses the same way. That parser reads UTF-8 only (a
byte-order mark, UTF-16 or any invalid byte is a syntax error), stops at 200 levels of nesting
instead of recursing, refuses number literals beyond float64 (a 5,000-digit integer), and raises
nothing but `ValidationError` for bytes. It is also twice as fast as `json.loads` plus
`model_validate`, with no Python object tree in between.

Statuses: 415 for what the headers say (media type, charset, duplicates, compression), 413 for
size, 400 for bytes that are not UTF-8 JSON, 422 for JSON that is not a valid request.

With `answer` set, a valid request is answered here: `answer(request)` gets the validated request
and returns (status, JSON body), or None to let BentoML's own dispatch answer it (before the model
is loaded). BentoML would parse and validate the same bytes again with the same model, then build
its request context and serialize through its IO descriptors: a profile put a third of the worker's
CPU per request there, for nothing this service uses. Everything outside this middleware (metrics,
the timeout, the concurrency cap, the error shape) still runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pydantic

from bentos.classifier.io_schemas import error_body, summarize, validation_details

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Refusal = tuple[int, str, str]
Answer = Callable[[Any], Awaitable[tuple[int, bytes] | None]]

JSON_MEDIA_TYPE = b"application/json"
UTF8_NAMES = ("utf-8", "utf8")
# UTF-32 BE, UTF-8, UTF-16 LE (and UTF-32 LE, which starts the same), UTF-16 BE.
BYTE_ORDER_MARKS = (b"\x00\x00\xfe\xff", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class RequestGuard:
    """Guard POST requests to `paths`: headers, body size, JSON syntax and request schema."""

    def __init__(
        self,
        app: Any,
        *,
        paths: tuple[str, ...],
        request_model: type[pydantic.BaseModel],
        max_body_bytes: int,
        answer: Answer | None = None,
    ) -> None:
        self.app = app
        self.paths = paths
        self.validate_json = request_model.model_validate_json
        self.max_body_bytes = max_body_bytes
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        refusal = self.check_headers(scope["headers"])
        if refusal is not None:
            await _reject(send, *refusal)
            return

        body = await read_body(receive, self.max_body_bytes)
        if body is None:
            return
        if isinstance(body, int):
            await _reject(send, 413, "payload_too_large", self._too_large(body))
            return

        try:
            request = self.validate_json(body)
        except pydantic.ValidationError as exc:
            await _reject(send, *_explain(exc, body))
            return
        except (ValueError, RecursionError) as exc:  # not raised for bytes today; never let one through
            await _reject(send, 400, "malformed_json", f"The body is not valid JSON: {exc}.")
            return

        if self.answer is not None and (answered := await self.answer(request)) is not None:
            await respond(send, *answered)
            return

        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:  # after the body, behave like the real stream: wait for disconnect
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def check_headers(self, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
        """Why the headers alone rule the request out (media type first, then size), or None. ASGI
        gives header lines as (lowercase name, value) pairs, so a repeated Content-Type is seen."""
        content_types: list[bytes] = []
        declared = 0
        encoding = b""
        for name, value in headers:
            if name == b"content-type":
                content_types.append(value)
            elif name == b"content-length" and value.isdigit():
                declared = max(declared, int(value))
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                encoding = value  # any line that is not identity counts, wherever it is
        if encoding:
            return 415, "unsupported_media_type", _unsupported(f"Content-Encoding {_show(encoding)}")
        if len(content_types) > 1:
            shown = ", ".join(_show(v) for v in content_types)
            return 415, "unsupported_media_type", f"Send one Content-Type header, not {len(content_types)}: {shown}."
        if not content_types or content_types[0] != JSON_MEDIA_TYPE:  # the exact value is the fast path
            refusal = _check_content_type(content_types[0] if content_types else b"")
            if refusal is not None:
                return refusal
        if declared > self.max_body_bytes:
            return 413, "payload_too_large", self._too_large(declared)
        return None

    def _too_large(self, size: int) -> str:
        return f"The body is {size} bytes; the limit is {self.max_body_bytes} bytes."


async def read_body(receive: Receive, limit: int) -> bytes | int | None:
    """The whole request body; its size so far once it passes `limit` bytes (chunked bodies have no
    Content-Length, so the cap holds while reading); None when the client disconnects first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one message is the common case


def _check_content_type(value: bytes) -> Refusal | None:
    """application/json with no charset or charset=utf-8 (JSON is UTF-8: RFC 8259), else 415."""
    media_type, *parameters = value.decode("latin-1").split(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json":
        what = f"Content-Type {media_type}" if media_type else "A body without Content-Type"
        return 415, "unsupported_media_type", _unsupported(what)
    for parameter in parameters:
        key, _, charset = parameter.partition("=")
        if key.strip().lower() == "charset" and charset.strip().strip('"').lower() not in UTF8_NAMES:
            return 415, "unsupported_media_type", _unsupported(f"charset {charset.strip()}")
    return None


def _explain(exc: pydantic.ValidationError, body: bytes) -> tuple[int, str, str, list[dict[str, Any]]]:
    """A parser error is 400 malformed_json with the likely cause; anything else is 422 invalid_input."""
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return 400, "malformed_json", _why_not_json(body, first["msg"].removeprefix("Invalid JSON: ")), []
    details = validation_details(exc)
    return 422, "invalid_input", summarize(details), details


def _why_not_json(body: bytes, parser_message: str) -> str:
    # Only on the error path: the parser has already refused the body, this names the likely cause.
    if body.startswith(BYTE_ORDER_MARKS):
        return "The body starts with a byte-order mark: send UTF-8 JSON without one."
    if b"\x00" in body:  # never in UTF-8 JSON text; every ASCII character has one in UTF-16 and UTF-32
        return "The body is not UTF-8 (it looks like UTF-16 or UTF-32): send UTF-8 JSON."
    if not body.strip():
        return 'The body is empty: send a JSON object, {"rows": [[...], ...]}.'
    return f"The body is not valid UTF-8 JSON: {parser_message}."


def _unsupported(what: str) -> str:
    return f"{what} is not accepted: send UTF-8 JSON, uncompressed, with Content-Type: application/json."


def _show(value: bytes, limit: int = 60) -> str:
    """A header value for a message, quoted and cut short."""
    text = value.decode("latin-1")
    return repr(text if len(text) <= limit else text[:limit] + "...")


async def _reject(
    send: Send, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> None:
    await respond(send, status, error_body(code, message, details))


async def respond(send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Send one JSON response (the guard's, and the Open Inference Protocol's in bentos/classifier/oip.py)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
