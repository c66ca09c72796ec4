"""Stage package: the manifest the service reads and the model card people read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline import artifacts
from pipeline.package import build_manifest, render_model_card

pytestmark = pytest.mark.slow  # every test here needs the trained model


def test_manifest_version_is_the_model_hash_prefix(packaged_root: Path):
    """version is the first 16 hex digits of sha256(model.onnx), the served file; sha256 is the full
    hash, and the Keras model it came from is recorded by its hash."""
    manifest = artifacts.read_json(packaged_root / artifacts.MANIFEST_JSON)
    digest = hashlib.sha256((packaged_root / artifacts.ONNX_FILE).read_bytes()).hexdigest()
    assert manifest["sha256"] == digest
    assert manifest["version"] == digest[:16]
    assert manifest["model_file"] == "model.onnx"
    assert (manifest["input_name"], manifest["output_name"]) == ("features", "probabilities")
    keras = hashlib.sha256((packaged_root / artifacts.MODEL_FILE).read_bytes()).hexdigest()
    assert manifest["keras_sha256"] == keras


def test_manifest_has_what_the_service_needs(packaged_root: Path, params):
    """The manifest names the model and carries schema, metrics and the params that shaped it."""
    manifest = artifacts.read_json(packaged_root / artifacts.MANIFEST_JSON)
    assert manifest["name"] == params["model"]["name"]
    assert manifest["n_features"] == len(manifest["feature_names"]) == 30
    assert manifest["class_names"] == ["malignant", "benign"]
    assert manifest["metrics"] == artifacts.read_json(packaged_root / artifacts.METRICS_JSON)
    assert manifest["params"]["train"] == params["train"]


def test_model_card_contains_the_metrics(packaged_root: Path):
    """The card's metrics table shows each metric of both models, and the version."""
    card = (packaged_root / artifacts.MODEL_CARD_MD).read_text()
    manifest = artifacts.read_json(packaged_root / artifacts.MANIFEST_JSON)
    metrics = manifest["metrics"]
    assert manifest["version"] in card
    for name in artifacts.METRIC_NAMES:
        classifier, baseline = metrics["classifier"][name], metrics["baseline"][name]
        assert f"| {name} | {classifier:.4f} | {baseline:.4f} |" in card


def test_manifest_and_card_are_deterministic(packaged_root: Path, params):
    """Building twice from the same inputs gives the same manifest and card (no timestamps)."""
    schema = artifacts.read_json(packaged_root / artifacts.SCHEMA_JSON)
    metrics = artifacts.read_json(packaged_root / artifacts.METRICS_JSON)
    recorded = {name: params[name] for name in ("data", "train", "baseline")}
    first, second = (build_manifest("m", b"model bytes", schema, metrics, recorded) for _ in range(2))
    assert artifacts.dumps_json(first) == artifacts.dumps_json(second)
    assert render_model_card(first) == render_model_card(second)
