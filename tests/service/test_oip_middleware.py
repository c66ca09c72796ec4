"""The Open Inference Protocol middleware on a stand-in app: routes, parsing, errors, dispatch, OpenAPI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bentos.classifier.oip import (
    InferParser,
    ModelSpec,
    OpenInferenceProtocol,
    ProtocolError,
    add_to_openapi,
    check_headers,
    infer_body,
)

SPEC = ModelSpec(
    name="clf",
    version="0123456789abcdef",
    platform="onnxruntime_onnx",
    input_name="features",
    n_features=3,
    class_names=("malignant", "benign"),
    max_rows=4,
)
INFER = "/v2/models/clf/infer"
ROW = [1.0, 2.0, 3.0]


def tensor(rows: list[list[float]], **extra) -> dict:
    """An infer request body with `rows` as the FP32 input, row-major."""
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [len(rows), 3], "data": flat}], **extra}


def softmax_of_sum(rows: np.ndarray) -> np.ndarray:
    """A stand-in model: [sigmoid(-sum), sigmoid(sum)] per row."""
    p = 1 / (1 + np.exp(-rows.sum(axis=1)))
    return np.stack([1 - p, p], axis=1).astype(np.float32)


async def predict(request: Request) -> JSONResponse:
    """/predict of the stand-in: what BentoML's dispatch of the classifier answers, shape for shape."""
    rows = np.asarray((await request.json())["rows"], dtype=np.float32)
    if (rows > 1e6).any():
        return JSONResponse([{"error": "rows are out of range"}], status_code=400)
    probabilities = softmax_of_sum(rows)
    return JSONResponse(
        [
            {
                "label": SPEC.class_names[int(p.argmax())],
                "probabilities": dict(zip(SPEC.class_names, p.tolist(), strict=True)),
            }
            for p in probabilities
        ]
    )


async def docs(request: Request) -> JSONResponse:
    """/docs.json of the stand-in: an OpenAPI document with /predict only."""
    return JSONResponse({"openapi": "3.0.2", "paths": {"/predict": {}}, "components": {"schemas": {}}})


def client_for(*, ready: bool = True, direct: bool = True, model=softmax_of_sum) -> TestClient:
    """The middleware in front of the stand-in app; `direct` answers with `model`, else via /predict."""

    async def infer(rows: np.ndarray) -> np.ndarray:
        return model(rows)

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/docs.json", docs)])
    protocol = OpenInferenceProtocol(
        app,
        spec=SPEC,
        server_name="svc",
        server_version="1.4.39",
        max_body_bytes=4096,
        ready=lambda: ready,
        infer=infer if direct else None,
    )
    return TestClient(protocol)


@pytest.fixture(name="client", params=["direct", "dispatch"])
def fixture_client(request) -> TestClient:
    """The middleware answering directly, and through the app's /predict (as with adaptive batching)."""
    return client_for(direct=request.param == "direct")


def test_routes_answer_metadata_and_health(client):
    """GET /v2, the health routes, and the model's metadata and readiness, by name and by version."""
    assert client.get("/v2").json() == {"name": "svc", "version": "1.4.39", "extensions": []}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    metadata = client.get("/v2/models/clf").json()
    assert metadata == client.get("/v2/models/clf/versions/0123456789abcdef").json()
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}]
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label"]
    assert client.get("/v2/models/clf/ready").status_code == 200


def test_infer_answers_probabilities_and_labels(client):
    """Both outputs by default, FP32 row-major and BYTES, from the model's probabilities, id echoed."""
    rows = [ROW, [-1.0, -2.0, -3.0]]
    body = client.post(INFER, json=tensor(rows, id="r1")).json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("clf", "0123456789abcdef", "r1")
    probabilities, label = body["outputs"]
    np.testing.assert_allclose(np.reshape(probabilities["data"], (2, 2)), softmax_of_sum(np.asarray(rows)), atol=1e-7)
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["benign", "malignant"]}


def test_a_loading_model_is_503_and_a_non_finite_output_is_refused():
    """Before the model is loaded: 503 for readiness and infer; an output with NaN is a 400, never sent."""
    loading = client_for(ready=False)
    assert loading.get("/v2/health/ready").status_code == 503
    assert loading.get("/v2/health/live").status_code == 200
    assert loading.post(INFER, json=tensor([ROW])).status_code == 503
    broken = client_for(model=lambda rows: np.full((len(rows), 2), np.nan, dtype=np.float32))
    response = broken.post(INFER, json=tensor([ROW]))
    assert response.status_code == 400
    assert "overflow" in response.json()["error"]


def test_dispatch_errors_keep_their_meaning():
    """Through /predict, a refusal of the rows is a 400 with /predict's own sentence."""
    response = client_for(direct=False).post(INFER, json=tensor([[1e7, 0.0, 0.0]]))
    assert response.status_code == 400
    assert response.json() == {"error": "rows are out of range"}


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/v2/models/other", "GET", 404),
        ("/v2/models/clf/versions/1", "GET", 404),
        ("/v2/models/clf/versions/1/infer", "POST", 404),
        ("/v2/models/clf/infer/extra", "POST", 404),
        ("/v2/repository/index", "POST", 404),
        ("/v2", "POST", 405),
        ("/v2/models/clf", "DELETE", 405),
        (INFER, "GET", 405),
    ],
)
def test_unknown_models_routes_and_methods(client, path, method, status):
    """404 for what this server does not serve, 405 with Allow for a wrong method: all `{"error"}`."""
    response = client.request(method, path, json=tensor([ROW]))
    assert response.status_code == status
    assert list(response.json()) == ["error"]
    if status == 405:
        assert response.headers["allow"] in ("GET", "POST")


def test_other_paths_pass_through_and_docs_gain_the_protocol(client):
    """/predict is the app's; /docs.json is the app's document with the protocol's paths and schemas added."""
    assert client.post("/predict", json={"rows": [ROW]}).status_code == 200
    document = client.get("/docs.json").json()
    assert "/predict" in document["paths"]
    assert {"/v2", "/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"} <= set(
        document["paths"]
    )
    request = document["components"]["schemas"]["V2InferenceRequest"]
    assert request["properties"]["inputs"]["maxItems"] == 1


PARSER = InferParser(SPEC)


def refused(body: bytes, binary: int | None = None) -> str:
    """The sentence a body is refused with (it must be refused with 400)."""
    with pytest.raises(ProtocolError) as raised:
        PARSER.parse(body, binary)
    assert raised.value.status == 400
    return raised.value.message


def test_the_parser_takes_row_major_nested_and_binary_data():
    """The three encodings of the same rows give the same float32 array."""
    rows = [ROW, [4.0, 5.0, 6.0]]
    flat = PARSER.parse(json.dumps(tensor(rows)).encode()).rows
    nested_body = tensor(rows)
    nested_body["inputs"][0]["data"] = rows
    nested = PARSER.parse(json.dumps(nested_body).encode()).rows
    raw = np.asarray(rows, dtype="<f4").tobytes()
    header = tensor(rows)
    del header["inputs"][0]["data"]
    header["inputs"][0]["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(header).encode()
    binary = PARSER.parse(head + raw, len(head)).rows
    for got in (nested, binary):
        np.testing.assert_array_equal(got, flat)
    assert flat.dtype == np.float32
    assert flat.shape == (2, 3)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
        (json.dumps({"inputs": []}).encode(), "inputs: List should have at least 1 item"),
        (json.dumps(tensor([ROW] * 5)).encode(), "inputs.0.shape.0"),
        (json.dumps({**tensor([ROW]), "outputs": [{"name": "probabilities", "x": 1}]}).encode(), "outputs.0.x"),
        (json.dumps(tensor([[1.0, 2.0, float("inf")]])).encode(), "inputs.0.data"),
        (json.dumps(tensor([["1", 2.0, 3.0]])).encode(), "inputs.0.data"),
        (json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3]}]}).encode(), "has no data"),
    ],
    ids=["empty", "truncated", "utf16", "no-input", "rows", "output-extra", "infinity", "string", "no-data"],
)
def test_the_parser_refuses_with_the_place_of_the_problem(body, says):
    """Each refusal is one sentence that names where the problem is."""
    assert says in refused(body)


def test_binary_data_must_match_the_shape_and_be_finite():
    """binary_data_size must equal the shape's bytes and what follows the JSON; NaN bytes are refused."""
    header = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}]
    }
    head = json.dumps(header).encode()
    assert "binary_data_size 12" in refused(head + b"\x00" * 8, len(head))
    assert "exceeds the body" in refused(head, len(head) + 1)
    nan = np.asarray([[np.nan, 0, 0]], dtype="<f4").tobytes()
    assert "NaN" in refused(head + nan, len(head))
    with_data = json.dumps(tensor([ROW])).encode()
    assert "binary data after the JSON" in refused(with_data + b"\x00" * 12, len(with_data))


def test_headers_refuse_compression_other_media_types_and_oversize():
    """No Content-Type is fine (tritonclient sends none); JSON is; octet-stream only with the binary header."""
    assert check_headers([], 100) is None
    assert check_headers([(b"content-type", b"application/json; charset=utf-8")], 100) is None
    assert (
        check_headers(
            [(b"inference-header-content-length", b"10"), (b"content-type", b"application/octet-stream")], 100
        )
        == 10
    )
    for headers, status in (
        ([(b"content-type", b"application/octet-stream")], 415),
        ([(b"content-type", b"application/json; charset=latin-1")], 415),
        ([(b"content-type", b"application/json"), (b"content-type", b"application/json")], 415),
        ([(b"content-encoding", b"gzip")], 415),
        ([(b"content-length", b"101")], 413),
        ([(b"inference-header-content-length", b"ten")], 400),
    ):
        with pytest.raises(ProtocolError) as raised:
            check_headers(headers, 100)
        assert raised.value.status == status, headers


def test_infer_body_sends_only_the_outputs_asked_for():
    """`outputs` selects; the response carries the model's name and version and no NaN."""
    parsed = PARSER.parse(json.dumps({**tensor([ROW]), "outputs": [{"name": "label"}]}).encode())
    body = json.loads(infer_body(SPEC, parsed, softmax_of_sum(parsed.rows)))
    assert body == {
        "model_name": "clf",
        "model_version": "0123456789abcdef",
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [1], "data": ["benign"]}],
    }


def test_openapi_states_every_route_with_its_errors():
    """add_to_openapi adds each route with its success schema and the protocol's error answers."""
    document: dict = {"paths": {}}
    add_to_openapi(document, SPEC)
    infer = document["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["responses"]) == {"200", "400", "404", "405", "413", "415", "503"}
    assert infer["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/V2ErrorBody"
    }
    assert "V2InferenceResponse" in document["components"]["schemas"]
