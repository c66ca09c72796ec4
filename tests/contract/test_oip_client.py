"""The Open Inference Protocol against the running container, with the protocol's own client.

`tritonclient.http` is what Triton's and KServe's users call their servers with: here it reads the
image's server and model metadata and readiness, infers the golden rows (as JSON and with Triton's
binary tensor extension, its default), and gets an InferenceServerException with a 4xx for each bad
request. The bad-input corpus of /predict (tests/contract/test_errors.py) is sent to /v2 infer too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.contract.test_errors import CASES, SETTINGS, row

pytestmark = pytest.mark.container


@pytest.fixture(scope="module", name="triton_client")
def fixture_triton_client(server) -> Iterator[triton.InferenceServerClient]:
    """tritonclient's HTTP client on the container (it takes host:port, no scheme)."""
    client = triton.InferenceServerClient(url=urlsplit(server.url).netloc, network_timeout=30)
    yield client
    client.close()


def features_input(rows: np.ndarray, *, binary: bool, datatype: str = "FP32", name: str = "features"):
    """The rows as the model's input tensor, sent as JSON or as raw bytes."""
    tensor = triton.InferInput(name, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def test_server_and_model_metadata_and_readiness(triton_client, manifest):
    """The server is live and ready; the model's metadata and readiness, by name and by its content hash."""
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.get_server_metadata()["name"] == "breast_cancer_service"
    name, version = manifest["name"], manifest["version"]
    assert triton_client.is_model_ready(name)
    assert triton_client.is_model_ready(name, version)
    metadata = triton_client.get_model_metadata(name, version)
    assert metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, manifest["n_features"]]}]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [("probabilities", "FP32"), ("label", "BYTES")]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_golden_rows_answer_as_predict_does(triton_client, client, golden, manifest, binary):
    """The golden rows through tritonclient: /predict's labels, and its probabilities within 1e-6."""
    rows = np.asarray([case["features"] for case in golden["cases"]], dtype=np.float32)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary), triton.InferRequestedOutput("label")]
    result = triton_client.infer(
        manifest["name"], [features_input(rows, binary=binary)], model_version=manifest["version"], outputs=outputs
    )
    predicted = client.post("/predict", json={"rows": rows.tolist()}).json()
    want = np.asarray([[p["probabilities"][c] for c in manifest["class_names"]] for p in predicted])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-6)
    assert [str(label) for label in result.as_numpy("label")] == [p["label"] for p in predicted]
    assert result.get_response()["model_version"] == manifest["version"]


def test_every_output_comes_without_asking(triton_client, golden, manifest):
    """No `outputs` in the request (tritonclient then asks for binary ones): both, read the same way."""
    rows = np.asarray([golden["cases"][0]["features"]], dtype=np.float32)
    result = triton_client.infer(manifest["name"], [features_input(rows, binary=True)])
    assert result.as_numpy("probabilities").shape == (1, 2)
    assert result.as_numpy("label").shape == (1,)


def bad_requests(manifest: dict) -> dict[str, tuple[dict, str]]:
    """Requests tritonclient can build that the server must refuse: (infer keyword arguments, status)."""
    good = np.zeros((1, manifest["n_features"]), dtype=np.float32)
    name = manifest["name"]
    return {
        "unknown-model": ({"model_name": "other", "inputs": [features_input(good, binary=False)]}, "404"),
        "unknown-version": (
            {"model_name": name, "model_version": "0", "inputs": [features_input(good, binary=False)]},
            "404",
        ),
        "wrong-datatype": (
            {"model_name": name, "inputs": [features_input(good.astype(np.float64), binary=False, datatype="FP64")]},
            "400",
        ),
        "wrong-shape": ({"model_name": name, "inputs": [features_input(good[:, :29], binary=False)]}, "400"),
        "wrong-name": ({"model_name": name, "inputs": [features_input(good, binary=False, name="x")]}, "400"),
        "unknown-output": (
            {
                "model_name": name,
                "inputs": [features_input(good, binary=False)],
                "outputs": [triton.InferRequestedOutput("logits")],
            },
            "400",
        ),
        "too-many-rows": (
            {
                "model_name": name,
                "inputs": [
                    features_input(
                        np.zeros((SETTINGS["max_rows_per_request"] + 1, manifest["n_features"]), np.float32),
                        binary=True,
                    )
                ],
            },
            "400",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown-model",
        "unknown-version",
        "wrong-datatype",
        "wrong-shape",
        "wrong-name",
        "unknown-output",
        "too-many-rows",
    ],
)
def test_bad_requests_raise_with_a_4xx(triton_client, manifest, case):
    """Each bad request is an InferenceServerException whose status is the protocol's 4xx, with a sentence."""
    kwargs, status = bad_requests(manifest)[case]
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(**kwargs)
    assert raised.value.status() == status
    assert raised.value.message()


def oip_case(manifest: dict, body: str | bytes) -> str | bytes:
    """A /predict corpus body carried into the protocol: its `rows` become the input's data, so the same
    bad content (bad JSON, bad numbers, wrong widths, too many rows) arrives in an infer request."""
    try:
        rows = json.loads(body)["rows"]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return body  # not JSON with rows: send the bytes as they are
    n = len(rows)
    width = len(rows[0]) if n and isinstance(rows[0], list) else manifest["n_features"]
    tensor = {"name": "features", "datatype": "FP32", "shape": [n, width], "data": rows}
    return json.dumps({"inputs": [tensor]}, allow_nan=True)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_bad_input_corpus_of_predict_is_a_4xx_here_too(client, manifest, case):
    """Every case of /predict's corpus, sent to /v2 infer: a 4xx in the protocol's one shape."""
    body, headers, _, _ = CASES[case]
    response = client.post(f"/v2/models/{manifest['name']}/infer", content=oip_case(manifest, body), headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert list(response.json()) == ["error"]
    assert isinstance(response.json()["error"], str)


def test_container_is_healthy_after_bad_protocol_input(client, server, triton_client, manifest):
    """After the corpus on /v2, the container runs, is ready, and answers a good request."""
    for body, headers, _, _ in CASES.values():
        path = f"/v2/models/{manifest['name']}/infer"
        assert client.post(path, content=oip_case(manifest, body), headers=headers).status_code < 500
    assert triton_client.is_server_ready()
    rows = np.asarray([json.loads(row())], dtype=np.float32)
    assert triton_client.infer(manifest["name"], [features_input(rows, binary=False)]).as_numpy("label").shape == (1,)
    assert server.inspect()["State"]["Running"]
