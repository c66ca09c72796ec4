"""compose.yaml on a real engine with Compose v2: the images the build recorded, locked down, a run trained
into the stack's MLflow and read back, the service answering the golden rows on /predict and /v2 infer."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest

from ci.compose.stack import SERVICE, TRACKING
from ci.project import GOLDEN, load_manifest, section
from pipeline import artifacts, tracking
from tests.tracking.test_mlflow_round_trip import flattened

pytestmark = pytest.mark.compose

# As tests/contract/test_predict.py: the golden probabilities are Keras's, the image runs the ONNX export.
TOLERANCE = 1e-4


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_both_containers_run_the_recorded_images_healthy(stack):
    """Each service runs the very image ID its build recorded, and Docker reports it healthy."""
    for service, image in ((SERVICE, "SERVICE_IMAGE"), (TRACKING, "TRACKING_IMAGE")):
        container = stack.container(service)
        assert container["Image"] == stack.images[image].id, service
        assert container["State"]["Health"]["Status"] == "healthy", service


def test_containers_are_locked_down(stack):
    """Non-root, read-only root filesystem, no capabilities, no-new-privileges, ports on 127.0.0.1 only."""
    uid = str(section("image")["user_uid"])
    for service in (SERVICE, TRACKING):
        container = stack.container(service)
        host = container["HostConfig"]
        assert container["Config"]["User"].split(":")[0] == uid, service
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert host["SecurityOpt"] == ["no-new-privileges:true"], service
        assert not host["Privileged"], service
        bindings = [b for spec in host["PortBindings"].values() for b in spec]
        assert bindings, service
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, service
        assert [b["HostPort"] for b in bindings] == [str(stack.ports[service])], service


def test_the_tracking_data_is_on_the_named_volume(stack):
    """MLflow's SQLite database and artifacts are on the project's named volume, mounted at /mlflow."""
    mounts = stack.container(TRACKING)["Mounts"]
    (volume,) = [m for m in mounts if m["Destination"] == "/mlflow"]
    assert volume["Type"] == "volume"
    assert volume["Name"] == f"{stack.project}_tracking-data"


def test_the_run_is_in_the_stacks_mlflow_with_its_metrics_and_model(stack, tracked, tmp_path):
    """The run the model card names is FINISHED, has every test metric of metrics.json, and its logged
    model's model.onnx is byte-equal to the DVC output the repro wrote."""
    mlflow = tracking.import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=stack.url(TRACKING))
    card = (tracked.project / artifacts.MODEL_CARD_MD).read_text()
    match = re.search(r"Tracked in MLflow: run `([0-9a-f]{32})`", card)
    assert match, "the model card names no MLflow run"
    run = client.get_run(match.group(1))
    assert run.info.status == "FINISHED"
    metrics = flattened(artifacts.read_json(tracked.project / artifacts.METRICS_JSON))
    assert len(metrics) == 13
    for key, value in metrics.items():
        assert run.data.metrics[key] == value, key
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=str(tmp_path), tracking_uri=stack.url(TRACKING)
        )
    )
    assert sha256(local / "model.onnx") == sha256(tracked.project / artifacts.ONNX_FILE)


def test_the_run_survives_a_restart_of_the_tracking_server(stack, tracked):
    """The run is on the volume, not in the container: after a restart the server still has it."""
    mlflow = tracking.import_mlflow()
    experiment = section("tracking")["experiment"]
    client = mlflow.MlflowClient(tracking_uri=stack.url(TRACKING))
    before = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])]
    stack.run("restart", TRACKING)
    stack.up()  # waits until it is healthy again
    after = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])]
    assert before
    assert after == before


@pytest.fixture(scope="module", name="golden")
def fixture_golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_the_service_answers_the_golden_rows_on_predict(stack, golden):
    """POST /predict on the published port gives the pipeline's golden labels and probabilities."""
    cases = golden["cases"]
    response = httpx.post(f"{stack.url(SERVICE)}/predict", json={"rows": [c["features"] for c in cases]}, timeout=10)
    assert response.status_code == 200, response.text
    for case, prediction in zip(cases, response.json(), strict=True):
        assert prediction["label"] == case["expected_label"]
        for name, expected in case["probabilities"].items():
            assert prediction["probabilities"][name] == pytest.approx(expected, abs=TOLERANCE)


def test_the_service_answers_the_golden_rows_on_v2_infer(stack, golden):
    """The Open Inference Protocol's infer, as JSON: the same labels and probabilities."""
    manifest = load_manifest()
    cases = golden["cases"]
    rows = [c["features"] for c in cases]
    body = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": [len(rows), len(rows[0])],
                "data": [x for row in rows for x in row],
            }
        ]
    }
    response = httpx.post(f"{stack.url(SERVICE)}/v2/models/{manifest['name']}/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"]["data"] == [c["expected_label"] for c in cases]
    names = golden["class_names"]
    probabilities = outputs["probabilities"]["data"]
    for i, case in enumerate(cases):
        for j, name in enumerate(names):
            assert probabilities[i * len(names) + j] == pytest.approx(case["probabilities"][name], abs=TOLERANCE)
