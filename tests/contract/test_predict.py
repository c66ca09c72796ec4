"""The served model answers like the model in the pipeline did, for fixed golden inputs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.container

# The pipeline computed the golden probabilities with Keras; the container runs the ONNX export,
# which the export stage keeps within 1e-5 of Keras on the whole test split (and ONNX Runtime's
# kernels may differ between CPUs in the last digits).
TOLERANCE = 1e-4


def test_golden_examples_match_the_pipeline(client, golden, manifest):
    """Fixed inputs give the expected labels and probabilities within tolerance, in one batch."""
    cases = golden["cases"]
    response = client.post("/predict", json={"rows": [case["features"] for case in cases]})
    assert response.status_code == 200, response.text
    predictions = response.json()
    assert len(predictions) == len(cases)
    for case, prediction in zip(cases, predictions, strict=False):
        assert prediction["label"] == case["expected_label"]
        assert prediction["model_version"] == manifest["version"]
        assert set(prediction["probabilities"]) == set(golden["class_names"])
        for name, expected in case["probabilities"].items():
            assert prediction["probabilities"][name] == pytest.approx(expected, abs=TOLERANCE)
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_each_row_alone_gives_the_same_answer(client, golden):
    """Batching does not change answers: one row per request gives the batch's result."""
    for case in golden["cases"][:3]:
        response = client.post("/predict", json={"rows": [case["features"]]})
        assert response.status_code == 200
        (prediction,) = response.json()
        assert prediction["label"] == case["expected_label"]


def test_largest_allowed_batch_is_served(client, golden):
    """A batch of exactly max_rows_per_request rows is accepted."""
    from bentos.classifier.model_files import load_settings

    limit = load_settings()["max_rows_per_request"]
    rows = [golden["cases"][0]["features"]] * limit
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200
    assert len(response.json()) == limit
