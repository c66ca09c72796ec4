"""The main job's closing summary (`ci/runner/summary.py --text`): metrics, images, provenance, tests."""

from __future__ import annotations

import pytest

from ci import records
from ci.runner import summary

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="10" time="1.0"></testsuite></testsuites>
"""
REPRO: records.ReproRecord = {
    "ran": ["train"],
    "trained": True,
    "pushed": True,
    "remote": "/r",
    "dvc_lock_changed": True,
    "metrics": {"baseline": {"accuracy": 0.98, "roc_auc": 0.99}, "classifier": {"accuracy": 0.96}, "n_test": 114},
}
IMAGE: records.ImageRecord = {
    "variant": "cpu",
    "ref": "breast-cancer:0.1.0-cpu",
    "id": "sha256:" + "a" * 64,
    "size": 386 * 1024 * 1024,
    "rootfs_layers": ["sha256:1", "sha256:2"],
    "base": "b:1",
    "base_source": "snapshot archive",
    "base_lock_changes": ["changed x"],
    "bento": "svc:abc",
    "bento_digest": "f" * 64,
    "model_tag": "m:123",
}


def test_provenance_names_training_base_source_and_lock_refresh():
    """The summary says whether the model was trained here, where each base came from, and what to commit."""
    cuda = {**IMAGE, "variant": "cuda", "base_source": "cache"}
    text = summary.provenance(REPRO, [IMAGE, cuda])
    assert "model: trained here (no remote had it), pushed to /r" in text
    assert "commit dvc.lock" in text
    assert "base (cpu): b:1 from snapshot archive" in text
    assert "base-packages.lock refreshed (1 changes): commit base-packages.lock and params.yaml\n  changed x" in text


def test_text_summary_puts_metrics_images_and_test_counts_together(tmp_path):
    """Every model's metrics side by side (from the repro record), each image, and passed = tests - the rest."""
    records.write_repro(REPRO, tmp_path)
    records.write_image(IMAGE, "cpu", tmp_path)
    (tmp_path / "test-results").mkdir()
    (tmp_path / "test-results" / "unit.xml").write_text(JUNIT)
    text = summary.render_text(tmp_path)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "baseline", "classifier"]
    assert "accuracy  0.9800    0.9600" in text
    assert "roc_auc   0.9900    –" in text
    assert "breast-cancer:0.1.0-cpu" in text
    assert "386.0 MiB" in text
    assert "model m:123, Bento svc:abc (sha256:ffffffffffffffff)" in text
    row = next(line for line in lines if line.startswith("unit"))
    assert row.split()[:5] == ["unit", "4", "2", "1", "3"]


def test_text_summary_without_a_build_says_to_build(tmp_path):
    """No image record: one sentence that says which command to run."""
    with pytest.raises(records.RecordError, match="nox -s build"):
        summary.render_text(tmp_path)


def test_text_summary_lists_the_tracking_server_image_beside_the_variants(tmp_path):
    """build/image-tracking.json (no model, no Bento) is one more image row; the model line comes from a variant."""
    tracking = {k: v for k, v in IMAGE.items() if k not in ("bento", "bento_digest", "model_tag")}
    tracking |= {"variant": "tracking", "ref": "mlflow-server:3.17.2-abc", "lock": "requirements-tracking.lock"}
    records.write_image(tracking, "tracking", tmp_path)
    assert "model " not in summary.render_text(tmp_path)
    records.write_image(IMAGE, "cpu", tmp_path)
    text = summary.render_text(tmp_path)
    assert "mlflow-server:3.17.2-abc" in text
    assert "model m:123, Bento svc:abc" in text
