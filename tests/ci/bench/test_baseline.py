"""The bench's bare baseline server: it finds the model, answers like the service, and times its pauses."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from starlette.testclient import TestClient

from ci.bench import baseline as bench_baseline

N_FEATURES = 30


@pytest.fixture(name="models_dir")
def fixture_models_dir(tmp_path) -> Path:
    """A store with one model (name/version/model.onnx, manifest.json): [n, 30] features -> [n, 2] probabilities."""
    weights = np.zeros((N_FEATURES, 2), dtype=np.float32)
    weights[0] = [1.0, -1.0]  # the first feature decides: large -> class 0 ("malignant")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.zeros(2, np.float32), "b")],
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    directory = tmp_path / "models" / "clf" / "abc123"
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    manifest = {"n_features": N_FEATURES, "class_names": ["malignant", "benign"], "version": "abc123"}
    (directory / "manifest.json").write_text(json.dumps({**manifest, "model_file": "model.onnx"}))
    return tmp_path / "models"


@pytest.fixture(name="client")
def fixture_client(models_dir):
    """The baseline app on the tiny model; its gc hook removed afterwards."""
    before = list(gc.callbacks)
    app = bench_baseline.create_app(*bench_baseline.find_model(models_dir))
    with TestClient(app) as client:
        yield client
    gc.callbacks[:] = before


def test_find_model_by_tag_or_the_only_one(models_dir):
    """MODEL_TAG (name:version) picks the model; without it the only model in the store is used."""
    by_tag, manifest = bench_baseline.find_model(models_dir, "clf:abc123")
    assert by_tag == models_dir / "clf" / "abc123" / "model.onnx"
    assert manifest["version"] == "abc123"
    assert bench_baseline.find_model(models_dir)[0] == by_tag
    with pytest.raises(SystemExit, match="found 0"):
        bench_baseline.find_model(models_dir, "clf:other")


def test_predict_answers_in_the_services_shape(client):
    """POST /predict gives one {label, probabilities, model_version} per row, probabilities rounded to 6 digits."""
    rows = [[5.0] + [0.0] * (N_FEATURES - 1), [-5.0] + [0.0] * (N_FEATURES - 1)]
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200
    first, second = response.json()
    assert (first["label"], second["label"]) == ("malignant", "benign")
    assert first["model_version"] == "abc123"
    assert first["probabilities"] == {"malignant": pytest.approx(0.999955, abs=1e-6), "benign": pytest.approx(4.5e-5)}
    assert set(first) == {"label", "probabilities", "model_version"}


@pytest.mark.parametrize("body", ['{"rows": [[1, 2]]}', '{"rows": []}', '{"x": 1}', "not json"])
def test_predict_refuses_a_wrong_shape(client, body):
    """Rows of the wrong width, none at all, or no JSON: 422, never a 500."""
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_readyz_and_gcmax(client):
    """The model loads before the server listens (ready at once); /gcmax reports the pauses timed so far."""
    assert client.get("/readyz").status_code == 200
    gc.collect()
    pauses = client.get("/gcmax").json()
    assert pauses["collections"] >= 1
    assert 0 < pauses["longest_s"] < 5
