"""The Open Inference Protocol in-process: the real service and model behind BentoML's ASGI app, on
both ways of answering (the direct path, and /predict's dispatch, where adaptive batching would apply)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.inprocess


def infer_path(manifest: dict, version: bool = False) -> str:
    """/v2/models/<name>[/versions/<version>]/infer for the served model."""
    middle = f"/versions/{manifest['version']}" if version else ""
    return f"/v2/models/{manifest['name']}{middle}/infer"


def request_for(rows: list[list[float]], **extra) -> dict:
    """An inference request with the rows as one FP32 tensor, row-major."""
    flat = [value for row in rows for value in row]
    return {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [len(rows), len(rows[0])], "data": flat}],
        **extra,
    }


def test_server_and_model_metadata_describe_the_served_model(client, manifest):
    """GET /v2 names the service; the model's metadata has its content hash and the graph's tensors."""
    server = client.get("/v2")
    assert server.status_code == 200
    assert server.json()["name"] == "breast_cancer_service"
    for path in (f"/v2/models/{manifest['name']}", f"/v2/models/{manifest['name']}/versions/{manifest['version']}"):
        metadata = client.get(path)
        assert metadata.status_code == 200, metadata.text
        assert metadata.json() == {
            "name": manifest["name"],
            "versions": [manifest["version"]],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, manifest["n_features"]]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ],
        }
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{manifest['name']}/ready"):
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("version", [False, True], ids=["latest", "by-version"])
def test_infer_answers_what_predict_answers(client, golden, manifest, version):
    """The golden rows through /v2 infer: the labels of /predict, probabilities within 1e-6 of its
    (rounded to 6 decimals) ones, in the manifest's class order, and the request id echoed."""
    rows = [case["features"] for case in golden["cases"]]
    predicted = client.post("/predict", json={"rows": rows}).json()
    response = client.post(infer_path(manifest, version), json=request_for(rows, id="golden-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (
        manifest["name"],
        manifest["version"],
        "golden-1",
    )
    outputs = {output["name"]: output for output in body["outputs"]}
    probabilities = outputs["probabilities"]
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [len(rows), 2])
    got = np.asarray(probabilities["data"]).reshape(len(rows), 2)
    want = np.asarray([[p["probabilities"][name] for name in manifest["class_names"]] for p in predicted])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert outputs["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [len(rows)],
        "data": [p["label"] for p in predicted],
    }


def test_nested_rows_binary_data_and_output_selection(client, golden, manifest):
    """Nested rows and Triton's binary tensor extension give the same answer as row-major JSON; `outputs`
    returns just the outputs it names."""
    rows = [case["features"] for case in golden["cases"]]
    flat = client.post(infer_path(manifest), json=request_for(rows)).json()["outputs"]
    nested = request_for(rows)
    nested["inputs"][0]["data"] = rows
    assert client.post(infer_path(manifest), json=nested).json()["outputs"] == flat

    raw = np.asarray(rows, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": [len(rows), 30],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    response = client.post(
        infer_path(manifest),
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [flat[1]]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        (lambda r, m: ("/v2/models/other/infer", r), 404, "unknown model 'other'"),
        (lambda r, m: (f"/v2/models/{m['name']}/versions/0000/infer", r), 404, "unknown version '0000'"),
        (lambda r, m: (None, {**r, "inputs": [{**r["inputs"][0], "datatype": "FP64"}]}), 400, "datatype"),
        (lambda r, m: (None, {**r, "inputs": [{**r["inputs"][0], "name": "x"}]}), 400, "inputs.0.name"),
        (lambda r, m: (None, {**r, "inputs": [{**r["inputs"][0], "shape": [2, 30]}]}), 400, "needs 60 values"),
        (lambda r, m: (None, {**r, "inputs": [{**r["inputs"][0], "shape": [1, 29]}]}), 400, "inputs.0.shape.1"),
        (lambda r, m: (None, {**r, "inputs": [{**r["inputs"][0], "data": [1e39] * 30}]}), 400, "float32"),
        (lambda r, m: (None, {**r, "inputs": [{**r["inputs"][0], "data": [True] * 30}]}), 400, "inputs.0.data"),
        (lambda r, m: (None, {**r, "outputs": [{"name": "logits"}]}), 400, "outputs.0.name"),
        (lambda r, m: (None, {**r, "outputs": [{"name": "label"}, {"name": "label"}]}), 400, "twice"),
        (lambda r, m: (None, {**r, "surprise": 1}), 400, "surprise"),
    ],
    ids=["model", "version", "datatype", "name", "data-length", "width", "float32", "bool", "output", "twice", "extra"],
)
def test_bad_requests_get_a_4xx_in_the_protocols_shape(client, golden, manifest, change, status, says):
    """Each bad infer request is refused with its status and `{"error": "<sentence>"}` naming the problem."""
    path, body = change(request_for([golden["cases"][0]["features"]]), manifest)
    response = client.post(path or infer_path(manifest), json=body)
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    assert says in response.json()["error"]


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{", {}, 400),
        (b"", {}, 400),
        (b"\xef\xbb\xbf{}", {}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b"{}", {"Content-Encoding": "gzip"}, 415),
        (b"[" * 100_000, {}, 400),
        (b"x" * 2_000_000, {}, 413),
    ],
    ids=["truncated", "empty", "bom", "text-plain", "gzip", "deep", "too-large"],
)
def test_bytes_that_are_not_a_request_get_a_4xx(client, manifest, content, headers, status):
    """The guarantees of /predict on raw bytes hold on /v2 infer: every one is a 4xx in the protocol's shape."""
    response = client.post(infer_path(manifest), content=content, headers=headers)
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]


def test_routes_and_methods_outside_the_protocol(client, manifest):
    """An unknown /v2 route is 404, a wrong method 405 with Allow, both in the protocol's shape."""
    missing = client.get("/v2/repository/index")
    assert missing.status_code == 404
    assert list(missing.json()) == ["error"]
    wrong = client.get(infer_path(manifest))
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert list(wrong.json()) == ["error"]


def test_the_served_openapi_document_has_the_protocols_routes(client, manifest):
    """/docs.json lists /predict and every route of the protocol, with the request schema's limits."""
    document = client.get("/docs.json").json()
    assert "/predict" in document["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        assert path in document["paths"], path
    assert "V2InferenceRequest" in document["components"]["schemas"]
