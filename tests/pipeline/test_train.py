"""Stage train: the exported scaler, the saved artifacts, and byte-identical retraining."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from sklearn.preprocessing import StandardScaler

from pipeline import artifacts
from pipeline.evaluate import load_classifier

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5


@pytest.fixture(scope="module", name="raw_and_scaled")
def fixture_raw_and_scaled(prepared_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw test features, and the same features scaled by a StandardScaler fitted on train."""
    train_features, _, _ = artifacts.read_split(prepared_root / artifacts.TRAIN_CSV)
    test_features, _, _ = artifacts.read_split(prepared_root / artifacts.TEST_CSV)
    scaler = StandardScaler().fit(train_features)
    return test_features, scaler.transform(test_features)


@pytest.mark.slow
def test_normalization_layer_reproduces_the_scaler(trained, prepared_root: Path, raw_and_scaled):
    """The saved model's first layer turns raw features into the scikit-learn scaled ones."""
    raw, scaled = raw_and_scaled
    model = load_classifier(prepared_root / artifacts.MODEL_FILE)
    normalized = np.asarray(model.layers[0](raw.astype(np.float32)))
    np.testing.assert_allclose(normalized, scaled, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_saved_model_on_raw_features_equals_keras_on_scaled_features(trained, prepared_root: Path, raw_and_scaled):
    """model.keras on raw features predicts what its layers after the scaler predict on scaled input."""
    raw, scaled = raw_and_scaled
    model = load_classifier(prepared_root / artifacts.MODEL_FILE)
    on_raw = model.predict(raw.astype(np.float32), verbose=0)
    hidden = scaled.astype(np.float32)
    for layer in model.layers[1:]:
        hidden = layer(hidden, training=False)
    np.testing.assert_allclose(on_raw, np.asarray(hidden), atol=TOLERANCE, rtol=0)
    # The in-memory model and the saved one agree too: saving loses nothing.
    in_memory = trained.classifier.predict(raw.astype(np.float32), verbose=0)
    np.testing.assert_allclose(on_raw, in_memory, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_baseline_takes_raw_features(trained, prepared_root: Path, raw_and_scaled):
    """baseline.joblib is scaler plus logistic regression: it scores raw features."""
    raw, _ = raw_and_scaled
    baseline = joblib.load(prepared_root / artifacts.BASELINE_FILE)
    proba = baseline.predict_proba(raw)
    assert proba.shape == (len(raw), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.slow
def test_history_has_one_row_per_epoch(trained, prepared_root: Path, params):
    """training_history.csv has epoch, loss, val_loss, accuracy, val_accuracy, one row per epoch."""
    lines = (prepared_root / artifacts.HISTORY_CSV).read_text().splitlines()
    assert lines[0] == "epoch,loss,val_loss,accuracy,val_accuracy"
    assert len(lines) == 1 + params["train"]["epochs"]
    assert lines[1].startswith("1,")


def run_stages(root: Path, *stages: str) -> None:
    """Run `python -m pipeline.<stage>` in `root`, as `dvc repro` does, each in a new process."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for stage in stages:
        result = subprocess.run(
            [sys.executable, "-m", f"pipeline.{stage}"], cwd=root, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"pipeline.{stage} failed:\n{result.stderr}"


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.reproducibility
def test_training_twice_gives_identical_artifacts(tmp_path: Path, params):
    """Two fresh processes training from the same params write byte-identical model files."""
    roots = [tmp_path / "first", tmp_path / "second"]
    for root in roots:
        root.mkdir()
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        run_stages(root, "prepare", "train")
    for relative in (artifacts.MODEL_FILE, artifacts.BASELINE_FILE, artifacts.HISTORY_CSV):
        first, second = (sha256(root / relative) for root in roots)
        assert first == second, f"{relative} differs between two identical runs"
