"""Probes and metrics of the started service."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.inprocess


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_probes_answer_ok_in_json(client, path):
    """Once the model is loaded, both probes answer 200 with {"status": "ok"}."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_metrics_count_predictions_and_gc_pauses(client, manifest):
    """/metrics is Prometheus text with BentoML's request count for /predict and the worker's
    longest garbage-collection pause."""
    import prometheus_client.values
    from prometheus_client.parser import text_string_to_metric_families

    if prometheus_client.values.ValueClass is prometheus_client.values.MutexValue:
        pytest.skip(
            "prometheus_client was imported before this tier set PROMETHEUS_MULTIPROC_DIR (another tier ran "
            "first in this process), so nothing reaches the files /metrics reads: run `nox -s inprocess`."
        )
    assert client.post("/predict", json={"rows": [[1.0] * manifest["n_features"]]}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["classifier_gc_pause_max_seconds"].type == "gauge"
    requests = families["bentoml_service_request"]  # the parser names a counter without `_total`
    assert requests.type == "counter"
    answered = [
        sample.value
        for sample in requests.samples
        if sample.name == "bentoml_service_request_total"
        and sample.labels["endpoint"] == "/predict"
        and sample.labels["http_response_code"] == "200"
    ]
    assert answered
    assert answered[0] >= 1
