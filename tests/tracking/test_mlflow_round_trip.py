"""One tracked `dvc repro` against a real MLflow server, read back through MLflow's client.

Everything is compared with what DVC wrote in the same project: the params with params.yaml, the
metrics with reports/metrics.json and training_history.csv, the artifacts and the model's file
with the DVC outputs, byte for byte.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import artifacts, tracking
from tests.tracking.conftest import TrackedRepro
from tests.tracking.servers import sha256

pytestmark = pytest.mark.tracking


@pytest.fixture(scope="module", name="run")
def fixture_run(client, tracked: TrackedRepro) -> Any:
    """The run the model card names, as the server returns it."""
    card = (tracked.project / artifacts.MODEL_CARD_MD).read_text()
    match = re.search(r"Tracked in MLflow: run `([0-9a-f]{32})`", card)
    assert match, "the model card names no MLflow run"
    return client.get_run(match.group(1))


def flattened(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (`train.epochs`), as DVC names params and metrics."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def download(client, run_id: str, path: str, tmp_path: Path) -> Path:
    """One artifact of the run, downloaded from the server's artifact store."""
    return Path(client.download_artifacts(run_id, path, str(tmp_path)))


def test_one_repro_makes_one_finished_run(client, tracked: TrackedRepro, run):
    """The experiment holds exactly the run the card names, finished, named after the commit."""
    experiment = client.get_experiment_by_name(
        yaml.safe_load((tracked.project / "params.yaml").read_text())["tracking"]["experiment"]
    )
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == tracked.commit[:12]


def test_params_are_params_yaml(tracked: TrackedRepro, run):
    """The run's params are the sections the tracked stages read, value for value (non-strings as JSON)."""
    params = yaml.safe_load((tracked.project / "params.yaml").read_text())
    sections = ("data", "train", "baseline", "evaluate", "model")
    expected = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in flattened({name: params[name] for name in sections}).items()
    }
    assert run.data.params == expected


def test_test_metrics_equal_metrics_json(tracked: TrackedRepro, run):
    """Every number of reports/metrics.json is a metric of the run under `dvc metrics show`'s name."""
    metrics = flattened(artifacts.read_json(tracked.project / artifacts.METRICS_JSON))
    assert len(metrics) == 13
    for key, value in metrics.items():
        assert run.data.metrics[key] == value, key


def test_training_history_is_logged_per_epoch(client, tracked: TrackedRepro, run):
    """Each column of training_history.csv is a metric with one step per epoch and the CSV's values."""
    with (tracked.project / artifacts.HISTORY_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40
    for column in ("loss", "val_loss", "accuracy", "val_accuracy"):
        history = sorted(client.get_metric_history(run.info.run_id, column), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), float(r[column])) for r in rows], column


def test_tags_name_the_commit_and_the_lock(tracked: TrackedRepro, run):
    """The git commit (MLflow's own tag; a clean tree), the sha256 of the dvc.lock the run started from,
    and the model's hashes."""
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == tracked.commit
    assert tags["git.dirty"] == "false"
    assert tags["dvc.lock.sha256"] == tracked.lock_sha256
    manifest = artifacts.read_json(tracked.project / artifacts.MANIFEST_JSON)
    assert tags["model.sha256"] == manifest["sha256"]
    assert tags["model.version"] == manifest["version"]
    assert tags["model.keras_sha256"] == manifest["keras_sha256"]


@pytest.mark.parametrize(
    "path",
    [
        artifacts.HISTORY_CSV,
        artifacts.METRICS_JSON,
        artifacts.CONFUSION_CSV,
        artifacts.ROC_CSV,
        artifacts.PR_CSV,
        artifacts.MODEL_CARD_MD,
        artifacts.MANIFEST_JSON,
    ],
    ids=str,
)
def test_artifacts_are_the_dvc_outputs(client, tracked: TrackedRepro, run, tmp_path, path):
    """The reports, the plots, the model card and the manifest, at their repository paths, byte for byte."""
    assert download(client, run.info.run_id, str(path), tmp_path).read_bytes() == (tracked.project / path).read_bytes()


def test_model_is_the_dvc_output_with_its_signature(client, server, tracked: TrackedRepro, run, tmp_path):
    """The run's MLflow model (ONNX flavor) holds models/model.onnx with the very sha256 DVC's output and the
    manifest have, and the graph's input and output as its signature."""
    mlflow = tracking.import_mlflow()
    from mlflow.entities import LoggedModelStatus

    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert (model.name, model.source_run_id, model.status) == ("model", run.info.run_id, LoggedModelStatus.READY)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=str(tmp_path), tracking_uri=server.uri
        )
    )
    digest = sha256(tracked.project / artifacts.ONNX_FILE)
    assert sha256(local / "model.onnx") == digest
    assert artifacts.read_json(tracked.project / artifacts.MANIFEST_JSON)["sha256"] == digest
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"onnx", "python_function"}
    assert mlmodel["metadata"] == {"sha256": digest, "dvc_output": str(artifacts.ONNX_FILE)}
    assert json.loads(mlmodel["signature"]["inputs"]) == [
        {"name": "features", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 30]}}
    ]
    assert json.loads(mlmodel["signature"]["outputs"]) == [
        {"name": "probabilities", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}
    ]


def test_only_the_model_card_differs_from_an_untracked_repro(tracked: TrackedRepro):
    """Tracking changes no DVC output but the model card (it names the run): every other output hash in
    the new dvc.lock is the committed one's, and each stage said what it logged."""
    committed = subprocess.run(
        ["git", "show", "HEAD:dvc.lock"], cwd=tracked.project, capture_output=True, text=True, check=True
    )
    before = yaml.safe_load(committed.stdout)
    after = yaml.safe_load((tracked.project / "dvc.lock").read_text())

    def outs(lock: dict[str, Any]) -> dict[str, str]:
        return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}

    changed = {path for path, md5 in outs(after).items() if outs(before).get(path) != md5}
    assert changed == {str(artifacts.MODEL_CARD_MD)}
    for stage in ("training history", "test metrics", "as MLflow model"):
        assert stage in tracked.output
