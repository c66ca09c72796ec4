"""The Open Inference Protocol (KServe V2, Triton's HTTP/REST API) beside /predict, as ASGI middleware.

KServe's and Triton's clients (`tritonclient`, KServe's InferenceRESTClient) speak this protocol;
with it the image answers them as a Triton server would, for the one model it serves:

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     200 when live, ready (503 until the model is loaded)
    GET  /v2/models/{name}[/versions/{v}]      model metadata: inputs, outputs, datatypes, shapes
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

The version is the model's content hash (the manifest's `version`). The input is one FP32 tensor
`features` of shape [n, 30] (1 <= n <= serve.max_rows_per_request), row-major `data`, also accepted
nested [[...30 values], ...], or as raw little-endian bytes with Triton's binary tensor extension
(what tritonclient sends by default); the outputs are `probabilities` (FP32 [n, 2], in the
manifest's class order) and `label` (BYTES [n]), both unless `outputs` names some. Outputs are
always JSON, which the clients read whatever they asked for.

Every error is `{"error": "<one sentence>"}` (the protocol's shape): 400 for a bad request (JSON,
datatype, shape, names, values), 404 for an unknown model, version or route, 405, 413 and 415 as
for /predict, 503 before the model is loaded. The guarantees of /predict hold: the body is capped
while it is read, parsed once by pydantic-core (UTF-8 only, nesting capped, no NaN or Infinity,
numbers within float32), and a model output that is not finite is refused, never sent.

`infer` answers a validated request directly (serve.direct_predict); without it the rows go through
BentoML's own dispatch of /predict, so adaptive batching (serve.adaptive_batching) applies to both
routes. The routes are added to the served OpenAPI document (`/docs.json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, Field

from bentos.classifier.io_schemas import FLOAT32_MAX, Feature
from bentos.classifier.request_guard import read_body, respond

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Infer = Callable[[np.ndarray], Awaitable[np.ndarray | None]]

PREFIX = "/v2"
BINARY_HEADER = b"inference-header-content-length"  # Triton's binary tensor data extension
MODEL_ROUTE = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?$")
MAX_MESSAGE_CHARS = 300


class ProtocolError(Exception):
    """A request the protocol refuses: the status and the one sentence for `{"error": ...}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ModelSpec:
    """What the protocol says about the served model: its name, version and tensors."""

    name: str
    version: str
    platform: str
    input_name: str
    n_features: int
    class_names: tuple[str, ...]
    max_rows: int
    probabilities: str = "probabilities"
    label: str = "label"

    @property
    def outputs(self) -> tuple[str, str]:
        return (self.probabilities, self.label)

    def metadata(self) -> dict[str, Any]:
        """The model metadata response (`GET /v2/models/{name}`): -1 is the batch dimension."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, self.n_features]}],
            "outputs": [
                {"name": self.probabilities, "datatype": "FP32", "shape": [-1, len(self.class_names)]},
                {"name": self.label, "datatype": "BYTES", "shape": [-1]},
            ],
        }


# Request and response bodies. The request models are built per model (names, sizes), so that the
# OpenAPI document states the limits and pydantic-core checks them while it parses.
Parameters = dict[str, pydantic.StrictStr | pydantic.StrictInt | pydantic.StrictBool | pydantic.StrictFloat]


class ErrorBody(BaseModel):
    """The protocol's error response: one sentence."""

    error: str = Field(examples=["input 'features' has datatype FP64; the model takes FP32"])


class TensorMetadata(BaseModel):
    """One input or output of the model."""

    name: str
    datatype: str
    shape: list[int] = Field(description="-1 is the batch dimension")


class ModelMetadata(BaseModel):
    """`GET /v2/models/{model_name}`."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class OutputTensor(BaseModel):
    """One output of an inference response: `data` is row-major."""

    name: str
    datatype: str
    shape: list[int]
    data: list[float] | list[str]


class InferenceResponse(BaseModel):
    """`POST .../infer`: the requested outputs."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


def request_models(spec: ModelSpec) -> tuple[type[BaseModel], type[BaseModel]]:
    """(InferenceRequest, its input tensor) for `spec`: names, datatype, shape and value ranges."""
    row = Annotated[list[Feature], Field(min_length=spec.n_features, max_length=spec.n_features)]
    flat_max = spec.max_rows * spec.n_features

    class InferenceInput(BaseModel):
        """The input tensor: `data` row-major (or nested rows), or `parameters.binary_data_size` bytes."""

        model_config = pydantic.ConfigDict(extra="forbid")
        name: Literal[spec.input_name]  # type: ignore[valid-type]
        datatype: Literal["FP32"]
        shape: tuple[
            Annotated[int, Field(strict=True, ge=1, le=spec.max_rows)],
            Annotated[int, Field(strict=True, ge=spec.n_features, le=spec.n_features)],
        ]
        parameters: Parameters | None = None
        data: (
            Annotated[list[Feature], Field(min_length=1, max_length=flat_max)]
            | Annotated[list[row], Field(min_length=1, max_length=spec.max_rows)]  # type: ignore[valid-type]
            | None
        ) = None

    class RequestedOutput(BaseModel):
        """An output to return; `parameters` (binary_data) are accepted, outputs are JSON."""

        model_config = pydantic.ConfigDict(extra="forbid")
        name: Literal[spec.outputs]  # type: ignore[valid-type]
        parameters: Parameters | None = None

    class InferenceRequest(BaseModel):
        """An inference request of the Open Inference Protocol for this model."""

        model_config = pydantic.ConfigDict(extra="forbid")
        id: pydantic.StrictStr | None = None
        parameters: Parameters | None = None
        inputs: Annotated[list[InferenceInput], Field(min_length=1, max_length=1)]
        outputs: Annotated[list[RequestedOutput], Field(max_length=2)] | None = None

    return InferenceRequest, InferenceInput


@dataclass(frozen=True)
class ParsedInfer:
    """A validated inference request: the rows as float32 [n, n_features], the outputs to send, the id."""

    rows: np.ndarray
    outputs: tuple[str, ...]
    id: str | None


class InferParser:
    """Parse and check an infer body for one model (pydantic-core first, then what a schema cannot say)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        request_model, _ = request_models(spec)
        self.validate_json = request_model.model_validate_json

    def parse(self, body: bytes, binary_header_length: int | None = None) -> ParsedInfer:
        """The request in `body`; ProtocolError(400) when it is not a valid one."""
        header, tail = body, b""
        if binary_header_length is not None:
            if binary_header_length > len(body):
                raise ProtocolError(400, f"Inference-Header-Content-Length {binary_header_length} exceeds the body")
            header, tail = body[:binary_header_length], body[binary_header_length:]
        try:
            request = self.validate_json(header)
        except pydantic.ValidationError as exc:
            raise ProtocolError(400, describe(exc, header)) from None
        (tensor,) = request.inputs
        n, width = tensor.shape
        binary_size = (tensor.parameters or {}).get("binary_data_size")
        if tensor.data is not None and binary_size is not None:
            raise ProtocolError(400, f"input '{tensor.name}' has both data and binary_data_size: send one")
        if tensor.data is None:
            rows = self._binary_rows(tail, binary_size, n, width)
        else:
            if tail:
                raise ProtocolError(400, "the body has binary data after the JSON, but no input names its size")
            rows = self._json_rows(tensor.data, n, width)
        names = tuple(output.name for output in request.outputs or ()) or self.spec.outputs
        if len(set(names)) != len(names):
            raise ProtocolError(400, f"outputs names an output twice: {', '.join(names)}")
        return ParsedInfer(rows=rows, outputs=names, id=request.id)

    def _json_rows(self, data: list, n: int, width: int) -> np.ndarray:
        if isinstance(data[0], list):  # nested rows: pydantic has checked each has `width` values
            if len(data) != n:
                raise ProtocolError(400, f"shape [{n}, {width}] needs {n} rows; data has {len(data)}")
        elif len(data) != n * width:
            raise ProtocolError(400, f"shape [{n}, {width}] needs {n * width} values; data has {len(data)}")
        return np.asarray(data, dtype=np.float32).reshape(n, width)

    def _binary_rows(self, tail: bytes, size: Any, n: int, width: int) -> np.ndarray:
        if size is None:
            raise ProtocolError(400, f"input '{self.spec.input_name}' has no data: send data or binary_data_size")
        if not isinstance(size, int) or isinstance(size, bool) or size != len(tail) or size != n * width * 4:
            raise ProtocolError(
                400,
                f"binary_data_size {size!r}: shape [{n}, {width}] of FP32 is {n * width * 4} bytes, "
                f"and {len(tail)} bytes follow the JSON",
            )
        rows = np.frombuffer(tail, dtype="<f4").reshape(n, width)
        if not np.isfinite(rows).all():
            raise ProtocolError(400, f"input '{self.spec.input_name}' holds NaN or infinite values")
        return rows.astype(np.float32)  # native byte order, writable


def describe(exc: pydantic.ValidationError, body: bytes) -> str:
    """One sentence for a body pydantic refused: not JSON, or the first problem and where."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        if body.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body:
            return "the body is not UTF-8 JSON (a byte-order mark, UTF-16 or UTF-32): send UTF-8 JSON"
        return "the body is not valid JSON" if body.strip() else "the body is empty: send an inference request"
    # A union (flat or nested data) reports each branch: say the first, it names the value's place.
    where = ".".join(str(part) for part in first["loc"] if not _is_branch(part)) or "body"
    message = first["msg"]
    bound = (first.get("ctx") or {}).get("le", (first.get("ctx") or {}).get("ge"))
    if first["type"] in ("less_than_equal", "greater_than_equal") and bound is not None and abs(bound) == FLOAT32_MAX:
        message = "Input should be within float32's finite range"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return clip(f"{where}: {message}{more}")


def _is_branch(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(("list[", "function-")) or part == "none-required")


def clip(text: str) -> str:
    """One line, at most MAX_MESSAGE_CHARS."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def infer_body(spec: ModelSpec, parsed: ParsedInfer, probabilities: np.ndarray) -> bytes:
    """The inference response for `parsed` given the model's probabilities."""
    outputs = []
    for name in parsed.outputs:
        if name == spec.probabilities:
            data: list = probabilities.astype(np.float32).ravel().tolist()
            outputs.append({"name": name, "datatype": "FP32", "shape": list(probabilities.shape), "data": data})
        else:
            labels = [spec.class_names[i] for i in probabilities.argmax(axis=1).tolist()]
            outputs.append({"name": name, "datatype": "BYTES", "shape": [len(labels)], "data": labels})
    response: dict[str, Any] = {"model_name": spec.name, "model_version": spec.version, "outputs": outputs}
    if parsed.id is not None:
        response["id"] = parsed.id
    return json.dumps(response, allow_nan=False, separators=(",", ":")).encode()


def error_body(message: str) -> bytes:
    """`{"error": message}`."""
    return json.dumps({"error": clip(message)}).encode()


class OpenInferenceProtocol:
    """Answer every request under /v2 by the protocol; add its routes to /docs.json; pass the rest on."""

    def __init__(
        self,
        app: Any,
        *,
        spec: ModelSpec,
        server_name: str,
        server_version: str,
        max_body_bytes: int,
        ready: Callable[[], bool],
        infer: Infer | None = None,
        predict_path: str = "/predict",
    ) -> None:
        self.app = app
        self.spec = spec
        self.parser = InferParser(spec)
        self.server = json.dumps({"name": server_name, "version": server_version, "extensions": []}).encode()
        self.model_metadata = json.dumps(spec.metadata()).encode()
        self.max_body_bytes = max_body_bytes
        self.ready = ready
        self.infer = infer
        self.predict_path = predict_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            if scope["type"] == "http" and path == "/docs.json" and scope["method"] == "GET":
                await self._openapi(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        try:
            status, body = await self._route(scope, receive)
        except ProtocolError as exc:
            status, body = exc.status, error_body(exc.message)
        await respond(send, status, body, ((b"allow", _allowed(path)),) if status == 405 else ())

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path, method = scope["path"], scope["method"]
        if path in (PREFIX, f"{PREFIX}/health/live", f"{PREFIX}/health/ready"):
            _only(method, "GET")
            if path == PREFIX:
                return 200, self.server
            return self._readiness(path.endswith("/ready"))
        match = MODEL_ROUTE.match(path)
        if match is None:
            raise ProtocolError(404, f"no route {path}: see GET /v2/models/{self.spec.name}")
        self._check_model(match["name"], match["version"])
        action = match["action"]
        if action == "/infer":
            _only(method, "POST")
            return await self._infer(scope, receive)
        _only(method, "GET")
        return self._readiness(True) if action == "/ready" else (200, self.model_metadata)

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.spec.name:
            raise ProtocolError(404, f"unknown model '{name}': this server serves '{self.spec.name}'")
        if version is not None and version != self.spec.version:
            raise ProtocolError(
                404, f"unknown version '{version}' of '{name}': this server serves version '{self.spec.version}'"
            )

    def _readiness(self, needs_model: bool) -> tuple[int, bytes]:
        if needs_model and not self.ready():
            raise ProtocolError(503, "the model is loading: retry shortly")
        return 200, b"{}"

    async def _infer(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        binary_length = check_headers(scope["headers"], self.max_body_bytes)
        body = await read_body(receive, self.max_body_bytes)
        if body is None:
            return 400, error_body("the client disconnected before the body was read")
        if isinstance(body, int):
            raise ProtocolError(413, f"the body is {body} bytes; the limit is {self.max_body_bytes} bytes")
        parsed = self.parser.parse(body, binary_length)
        if not self.ready():
            raise ProtocolError(503, "the model is loading: retry shortly")
        probabilities = await self.infer(parsed.rows) if self.infer is not None else await self._dispatch(scope, parsed)
        if probabilities is None:
            raise ProtocolError(503, "the model is loading: retry shortly")
        if not np.isfinite(probabilities).all():
            bad = np.flatnonzero(~np.isfinite(probabilities).all(axis=1)).tolist()
            raise ProtocolError(
                400,
                f"rows {bad[:10]}: the model's probabilities overflow for these values; send raw "
                "features of the magnitude the model was trained on",
            )
        return 200, infer_body(self.spec, parsed, probabilities)

    async def _dispatch(self, scope: Scope, parsed: ParsedInfer) -> np.ndarray:
        """Send the rows through the app's own /predict (BentoML's dispatch, its batcher when on)."""
        body = json.dumps({"rows": parsed.rows.tolist()}).encode()
        inner = {
            **scope,
            "path": self.predict_path,
            "raw_path": self.predict_path.encode(),
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, _, answer = await call(self.app, inner, receive)
        if status != 200:
            raise ProtocolError(status if status >= 500 else 400, _dispatch_message(status, answer))
        predictions = json.loads(answer)
        return np.asarray(
            [[p["probabilities"][name] for name in self.spec.class_names] for p in predictions], dtype=np.float32
        )

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's document with the protocol's paths and schemas added."""
        status, headers, body = await call(self.app, scope, receive)
        if status == 200:
            document = json.loads(body)
            add_to_openapi(document, self.spec)
            body = json.dumps(document).encode()
        kept = tuple((k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-type"))
        await respond(send, status, body, kept)


async def call(app: Any, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run `app` on one request and collect its answer: (status, headers, body)."""
    status, headers, chunks = 500, [], []

    async def capture(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return status, headers, b"".join(chunks)


def _dispatch_message(status: int, body: bytes) -> str:
    """What /predict's dispatch said when it refused the rows (its own error shapes), as one sentence."""
    if status >= 500:
        return "the service could not answer now: retry shortly" if status in (503, 504) else "the service failed"
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        message = data.get("message") or data.get("error") or data.get("detail")
        if isinstance(message, str):
            return message
    return f"the request was refused ({status})"


def check_headers(headers: list[tuple[bytes, bytes]], max_body_bytes: int) -> int | None:
    """Refuse what the headers alone rule out (ProtocolError); return the binary header length, if any.

    No Content-Type is needed (the protocol names none, and tritonclient sends none); a body sent
    with one must be JSON (UTF-8), or octet-stream with the binary extension. Compression is refused.
    """
    content_types, binary_length, declared = [], None, 0
    for name, value in headers:
        if name == b"content-type":
            content_types.append(value)
        elif name == b"content-length" and value.isdigit():
            declared = max(declared, int(value))
        elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise ProtocolError(
                415, f"Content-Encoding {value.decode('latin-1')!r} is not accepted: send it uncompressed"
            )
        elif name == BINARY_HEADER:
            if not value.isdigit():
                raise ProtocolError(400, f"Inference-Header-Content-Length {value.decode('latin-1')!r} is not a number")
            binary_length = int(value)
    if len(content_types) > 1:
        raise ProtocolError(415, f"send one Content-Type header, not {len(content_types)}")
    if content_types:
        media_type, *parameters = content_types[0].decode("latin-1").split(";")
        media_type = media_type.strip().lower()
        allowed = (
            ("application/json", "application/octet-stream") if binary_length is not None else ("application/json",)
        )
        if media_type not in allowed:
            raise ProtocolError(415, f"Content-Type {media_type or '(empty)'} is not accepted: send JSON")
        for parameter in parameters:
            key, _, charset = parameter.partition("=")
            if key.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise ProtocolError(415, f"charset {charset.strip()} is not accepted: send UTF-8 JSON")
    if declared > max_body_bytes:
        raise ProtocolError(413, f"the body is {declared} bytes; the limit is {max_body_bytes} bytes")
    return binary_length


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise ProtocolError(405, f"{method} is not allowed here: use {allowed}")


def _allowed(path: str) -> bytes:
    return b"POST" if path.endswith("/infer") else b"GET"


def openapi30(node: Any) -> Any:
    """A JSON schema from pydantic in the words of OpenAPI 3.0, which BentoML's document declares:
    `const` becomes a one-value `enum`, a tuple's `prefixItems` an `items` of any of them (the
    exact tuple is checked by the server, and stated in the description)."""
    if isinstance(node, list):
        return [openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi30(value) for key, value in node.items()}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "prefixItems" in node:
        items = node.pop("prefixItems")
        node["items"] = {"anyOf": items}
        shown = ", ".join(f"{item.get('minimum')}..{item.get('maximum')}" for item in items)
        node.setdefault("description", f"[{shown}]")
    return node


def add_to_openapi(document: dict[str, Any], spec: ModelSpec) -> None:
    """Add the protocol's paths, with their request and response schemas, to an OpenAPI document."""
    request_model, _ = request_models(spec)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    template = "#/components/schemas/{model}"
    for model in (request_model, ErrorBody, ModelMetadata, ServerMetadata, InferenceResponse):
        schema = openapi30(model.model_json_schema(ref_template=template))
        schemas.update(schema.pop("$defs", {}))
        schemas["V2" + model.__name__] = schema

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/V2{name}"}

    def answer(description: str, schema: dict[str, Any] | None) -> dict[str, Any]:
        return {"description": description, **({"content": {"application/json": {"schema": schema}}} if schema else {})}

    errors = {
        "400": answer("A bad request: JSON, datatype, shape, names or values", ref("ErrorBody")),
        "404": answer("Unknown model or version", ref("ErrorBody")),
        "405": answer("Method not allowed", ref("ErrorBody")),
        "503": answer("The model is loading", ref("ErrorBody")),
    }
    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "example": spec.name}}
    version = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "example": spec.version},
    }
    empty = {"type": "object", "maxProperties": 0}
    tag = ["Open Inference Protocol"]
    paths = document.setdefault("paths", {})
    paths["/v2"] = {
        "get": {
            "tags": tag,
            "summary": "Server metadata",
            "responses": {"200": answer("Server metadata", ref("ServerMetadata")), "405": errors["405"]},
        }
    }
    paths["/v2/health/live"] = {
        "get": {"tags": tag, "summary": "Liveness", "responses": {"200": answer("Live", empty), "405": errors["405"]}}
    }
    paths["/v2/health/ready"] = {
        "get": {
            "tags": tag,
            "summary": "Readiness",
            "responses": {"200": answer("Ready", empty), "405": errors["405"], "503": errors["503"]},
        }
    }
    for prefix, parameters in (
        ("/v2/models/{model_name}", [name]),
        ("/v2/models/{model_name}/versions/{model_version}", [name, version]),
    ):
        lookup = {"404": errors["404"], "405": errors["405"]}
        paths[prefix] = {
            "get": {
                "tags": tag,
                "summary": "Model metadata",
                "parameters": parameters,
                "responses": {"200": answer("Model metadata", ref("ModelMetadata")), **lookup},
            }
        }
        paths[prefix + "/ready"] = {
            "get": {
                "tags": tag,
                "summary": "Model readiness",
                "parameters": parameters,
                "responses": {"200": answer("Ready", empty), **lookup, "503": errors["503"]},
            }
        }
        paths[prefix + "/infer"] = {
            "post": {
                "tags": tag,
                "summary": "Inference",
                "parameters": parameters,
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("InferenceRequest")}}},
                "responses": {
                    "200": answer("The requested outputs", ref("InferenceResponse")),
                    **errors,
                    "413": answer("The body is too large", ref("ErrorBody")),
                    "415": answer("Not JSON, or compressed", ref("ErrorBody")),
                },
            }
        }
