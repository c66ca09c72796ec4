"""Health, metrics, logs and shutdown of the running container."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.contract.containers import start_container, stop_container

pytestmark = pytest.mark.container


def test_livez_and_readyz(client):
    """Both probes answer 200 once the model is loaded."""
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_are_prometheus_text_and_count_requests(client):
    """/metrics is Prometheus text and counts /predict requests by status."""
    client.post("/predict", content="{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert "# TYPE bentoml_service_request_total counter" in text
    assert 'endpoint="/predict"' in text


def test_docker_healthcheck_turns_healthy(server):
    """The image's HEALTHCHECK reports healthy for a ready service."""
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        status = server.inspect()["State"].get("Health", {}).get("Status")
        if status == "healthy":
            break
        time.sleep(1)
    assert status == "healthy"


def test_service_logs_are_json(server, client):
    """The service's own log lines (startup, model load, access log) are JSON objects."""
    client.get("/readyz")
    lines = [line for line in server.logs().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r.get("message") == "model loaded" for r in records)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_sigterm_is_a_graceful_exit(docker, image):
    """`docker stop` (SIGTERM) ends the server cleanly: exit code 0, well before the SIGKILL timeout."""
    container = start_container(docker, image["ref"], image["port"])
    try:
        httpx.post(f"{container.url}/predict", json={"rows": [[1.0] * 30]}, timeout=10)
        started = time.monotonic()
        subprocess.run([docker, "stop", "--time", "30", container.name], check=True, capture_output=True)
        took = time.monotonic() - started
        state = container.inspect()["State"]
        assert state["ExitCode"] == 0, container.logs()[-2000:]
        assert took < 25, f"stop took {took:.1f} s: SIGTERM was not handled"
        assert "cleanup finalized" in container.logs()
    finally:
        stop_container(container)


def test_serving_writes_nothing_outside_what_bentoml_needs(docker, image):
    """After start-up and a prediction, the container's writable layer holds only BentoML's runtime
    files: in particular no ONNX Runtime telemetry (device id, event database under ~/.cache)."""
    container = start_container(docker, image["ref"], image["port"])
    try:
        response = httpx.post(f"{container.url}/predict", json={"rows": [[1.0] * 30]}, timeout=10)
        assert response.status_code == 200, response.text
        diff = subprocess.run([docker, "diff", container.name], capture_output=True, text=True, check=True).stdout
        changed = [line.split(" ", 1)[1] for line in diff.splitlines()]
        assert not [path for path in changed if path.startswith("/home/bentoml/.cache")], changed
    finally:
        stop_container(container)
