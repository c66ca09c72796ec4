"""The main job's summary counts test results from pytest's JUnit XML."""

from __future__ import annotations

import json

from ci import summary
from ci.summary import test_counts as count_results

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="10" time="1.0"></testsuite></testsuites>
"""


def test_counts_split_passed_from_the_rest(tmp_path):
    """passed = tests - failures - errors - skipped."""
    path = tmp_path / "unit.xml"
    path.write_text(JUNIT)
    assert count_results(path) == {"passed": 4, "failed": 2, "errors": 1, "skipped": 3}


def test_provenance_names_training_base_source_and_lock_refresh(tmp_path, monkeypatch):
    """The summary says whether the model was trained here, where each base came from, and what to commit."""
    repro = tmp_path / "repro.json"
    repro.write_text(
        json.dumps({"trained": True, "remote": "/r", "dvc_lock_changed": True, "ran": ["train"], "pushed": True})
    )
    monkeypatch.setattr(summary, "REPRO_RECORD", repro)
    records = [
        {"variant": "cpu", "base": "b:1", "base_source": "snapshot archive", "base_lock_changes": ["changed x"]},
        {"variant": "cuda", "base": "b:1", "base_source": "cache", "base_lock_changes": ["changed x"]},
    ]
    text = summary.provenance(records)
    assert "model: trained here (no remote had it), pushed to /r" in text
    assert "commit dvc.lock" in text
    assert "base (cpu): b:1 from snapshot archive" in text
    assert "base-packages.lock refreshed (1 changes): commit base-packages.lock and params.yaml\n  changed x" in text
