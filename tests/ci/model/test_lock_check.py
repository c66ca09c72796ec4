"""The dvc repro check fails on a stale pipeline and only warns when output bytes differ."""

from __future__ import annotations

import copy

import pytest
import yaml

from ci.model.lock_check import ROOT, is_derived, lock_drift, untidy_files


@pytest.fixture(name="lock")
def fixture_lock() -> dict:
    """A two-stage dvc.lock: prepare writes data/prepared, train reads a file inside it."""
    return {
        "schema": "2.0",
        "stages": {
            "prepare": {
                "cmd": "python -m pipeline.prepare",
                "deps": [{"path": "pipeline/prepare.py", "hash": "md5", "md5": "p1", "size": 10}],
                "params": {"params.yaml": {"data.seed": 42}},
                "outs": [{"path": "data/prepared", "hash": "md5", "md5": "d1.dir", "size": 5, "nfiles": 3}],
            },
            "train": {
                "cmd": "python -m pipeline.train",
                "deps": [
                    {"path": "data/prepared/train.csv", "hash": "md5", "md5": "t1", "size": 4},
                    {"path": "pipeline/train.py", "hash": "md5", "md5": "c1", "size": 9},
                ],
                "params": {"params.yaml": {"train.epochs": 40}},
                "outs": [{"path": "models/classifier", "hash": "md5", "md5": "m1.dir", "size": 7, "nfiles": 1}],
            },
        },
    }


def test_identical_locks_have_no_drift(lock):
    """A byte-for-byte reproduction: no error, no warning."""
    drift = lock_drift(lock, copy.deepcopy(lock))
    assert (drift.errors, drift.warnings) == ([], [])


def test_changed_source_dependency_is_an_error(lock):
    """Code changed without re-running the pipeline: dvc.lock is stale."""
    new = copy.deepcopy(lock)
    new["stages"]["train"]["deps"][1]["md5"] = "c2"
    assert lock_drift(lock, new).errors == ["stage train: dependency pipeline/train.py changed"]


def test_changed_params_and_cmd_are_errors(lock):
    """A params.yaml value or a command changed: the pipeline itself changed."""
    new = copy.deepcopy(lock)
    new["stages"]["train"]["params"]["params.yaml"]["train.epochs"] = 41
    new["stages"]["prepare"]["cmd"] = "python -m pipeline.prepare --fast"
    assert sorted(lock_drift(lock, new).errors) == ["stage prepare: cmd changed", "stage train: params changed"]


def test_added_stage_is_an_error(lock):
    """A stage in dvc.yaml that the committed dvc.lock lacks."""
    new = copy.deepcopy(lock)
    new["stages"]["evaluate"] = {"cmd": "python -m pipeline.evaluate"}
    assert lock_drift(lock, new).errors == ["stage evaluate: added since dvc.lock was committed"]


def test_output_bytes_and_derived_inputs_only_warn(lock):
    """Other model bytes (another CPU) and inputs that are outputs of a stage are warnings."""
    new = copy.deepcopy(lock)
    new["stages"]["train"]["outs"][0]["md5"] = "m2.dir"
    new["stages"]["train"]["deps"][0]["md5"] = "t2"  # data/prepared/train.csv lies in an output
    drift = lock_drift(lock, new)
    assert drift.errors == []
    assert drift.warnings == [
        "stage train: dep data/prepared/train.csv has other bytes",
        "stage train: out models/classifier has other bytes",
    ]


def test_is_derived_matches_outputs_and_files_inside_them():
    """A path is derived when it is an output or lies inside an output directory, not a prefix look-alike."""
    outputs = {"data/prepared", "models/classifier"}
    assert is_derived("data/prepared/train.csv", outputs)
    assert is_derived("models/classifier", outputs)
    assert not is_derived("data/prepared_old.csv", outputs)
    assert not is_derived("pipeline/train.py", outputs)


def test_untidy_files_ignore_dvc_lock_but_not_the_rest():
    """dvc.lock is judged by lock_drift; any other change or unignored new file is reported."""
    porcelain = " M dvc.lock\n M params.yaml\n?? stray.txt\n"
    assert untidy_files(porcelain) == ["params.yaml", "stray.txt"]


def test_the_committed_lock_compares_clean_with_itself():
    """The repository's own dvc.lock has the shape the check reads."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    drift = lock_drift(lock, copy.deepcopy(lock))
    assert (drift.errors, drift.warnings) == ([], [])
    assert lock["stages"], "dvc.lock has no stages"
