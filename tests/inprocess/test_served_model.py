"""The served path answers like the model: golden rows, the whole test split, on both ways of answering."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.inprocess

# The pipeline computed the golden probabilities with Keras; the service runs the ONNX export,
# which the export stage keeps within 1e-5 of Keras on the whole test split.
GOLDEN_TOLERANCE = 1e-4


def served(client, rows: np.ndarray, batch: int) -> list[dict]:
    """POST `rows` to /predict in requests of at most `batch` rows; every answer must be 200."""
    predictions = []
    for start in range(0, len(rows), batch):
        response = client.post("/predict", json={"rows": rows[start : start + batch].tolist()})
        assert response.status_code == 200, response.text
        predictions.extend(response.json())
    return predictions


def test_golden_rows_match_the_pipeline(client, golden, manifest):
    """The golden rows, in one request: 200, the pipeline's labels and probabilities, the manifest's version."""
    cases = golden["cases"]
    response = client.post("/predict", json={"rows": [case["features"] for case in cases]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    predictions = response.json()
    assert len(predictions) == len(cases)
    for case, prediction in zip(cases, predictions, strict=True):
        assert prediction["label"] == case["expected_label"]
        assert prediction["model_version"] == manifest["version"]
        assert set(prediction["probabilities"]) == set(golden["class_names"])
        for name, expected in case["probabilities"].items():
            assert prediction["probabilities"][name] == pytest.approx(expected, abs=GOLDEN_TOLERANCE)


def test_predictions_are_the_onnx_models_own(client, reference, test_split, manifest, settings):
    """Every test-split row, served, is exactly what models/model.onnx computes on the same batch
    (probabilities rounded to the six decimals the service sends). Both ways of answering are held
    to the same reference, so they also answer alike, to the last digit."""
    features, _ = test_split
    batch = settings["max_rows_per_request"]
    names = manifest["class_names"]
    expected = [
        {
            "label": names[int(np.argmax(probs))],
            "probabilities": {name: round(p, 6) for name, p in zip(names, probs, strict=True)},
            "model_version": manifest["version"],
        }
        for start in range(0, len(features), batch)
        for probs in reference.predict(features[start : start + batch].astype(np.float32)).tolist()
    ]
    assert served(client, features, batch) == expected


def test_served_accuracy_is_the_pipelines(client, test_split, manifest, settings):
    """The served labels score the test-split accuracy the pipeline recorded in the manifest."""
    features, target = test_split
    labels = [prediction["label"] for prediction in served(client, features, settings["max_rows_per_request"])]
    truth = [manifest["class_names"][index] for index in target]
    accuracy = np.mean([label == true for label, true in zip(labels, truth, strict=True)])
    assert round(float(accuracy), 6) == manifest["metrics"]["classifier"]["accuracy"]


def test_each_setting_answers_by_its_own_path(client, direct_predict, settings, manifest):
    """direct_predict: the guard answers, BentoML's dispatch never sees the request (no BentoML
    Server header); otherwise BentoML's dispatch answers. The tests above really cover both."""
    response = client.post("/predict", json={"rows": [[1.0] * manifest["n_features"]]})
    assert response.status_code == 200, response.text
    server = response.headers.get("server")
    if direct_predict:
        assert server is None
    else:
        assert server == f"BentoML Service/{settings['service']}"
