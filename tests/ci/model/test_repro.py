"""ci/model/repro.py: which stages ran, when training happened, and a changed dvc.lock under CI."""

from __future__ import annotations

import json
import subprocess

import pytest

from ci import records
from ci.model import repro
from ci.project import UserError

# What evaluate wrote; the record carries it to the summary.
METRICS = {"classifier": {"accuracy": 0.96}, "baseline": {"accuracy": 0.98}, "n_test": 114}

REPRO_OUTPUT = """Stage 'prepare' didn't change, skipping
Running stage 'train':
> python -m pipeline.train
Running stage 'evaluate':
"""


@pytest.fixture(name="fake_dvc")
def fixture_fake_dvc(tmp_path, monkeypatch):
    """dvc answers from a script: `repro` prints `output`, `remote list` names one default remote."""
    calls = []
    state = {"output": REPRO_OUTPUT, "push_rc": 0, "lock_changed": False}

    def dvc(*args, capture=False):
        calls.append(args)
        if args[:2] == ("remote", "list"):
            return subprocess.CompletedProcess(args, 0, "local\t/srv/remote  (default)\n", "")
        if args[:2] == ("remote", "default"):
            return subprocess.CompletedProcess(args, 0, "local\n", "")
        if args[0] == "push":
            return subprocess.CompletedProcess(args, state["push_rc"], "", "")
        return subprocess.CompletedProcess(args, 0, state["output"], "")

    monkeypatch.setattr(repro, "dvc", dvc)
    monkeypatch.setattr(repro, "lock_changed", lambda: state["lock_changed"])
    monkeypatch.setattr(records, "BUILD_DIR", tmp_path)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(METRICS))
    monkeypatch.setattr(repro, "METRICS", metrics)
    return state, calls


def test_ran_stages_reads_dvcs_output():
    """The stages `dvc repro` ran are read from its 'Running stage' lines, in order."""
    assert repro.ran_stages(REPRO_OUTPUT) == ["train", "evaluate"]
    assert repro.ran_stages("Data and pipelines are up to date.\n") == []


def test_training_is_reported_and_pushed(fake_dvc):
    """A run that trained says so in its record and pushes to the default remote."""
    _, calls = fake_dvc
    record = repro.reproduce(locked=True)
    assert record == {
        "ran": ["train", "evaluate"],
        "trained": True,
        "pushed": True,
        "remote": "/srv/remote",
        "dvc_lock_changed": False,
        "metrics": METRICS,
    }
    assert ("repro", "--pull") in calls
    assert ("push",) in calls
    assert records.load_repro() == record


def test_nothing_trained_when_the_remote_had_it(fake_dvc):
    """When every output was pulled, nothing ran and the record says the model was not trained."""
    state, _ = fake_dvc
    state["output"] = "Pulling data for stage: 'train'\nData and pipelines are up to date.\n"
    record = repro.reproduce(locked=True)
    assert record["ran"] == []
    assert record["trained"] is False


def test_changed_lock_fails_when_locked_and_is_reported_otherwise(fake_dvc):
    """Under CI a changed dvc.lock is an error that says what to do; at a terminal the record says it changed."""
    state, _ = fake_dvc
    state["lock_changed"] = True
    with pytest.raises(UserError, match=r"git diff dvc\.lock"):
        repro.reproduce(locked=True)
    assert repro.reproduce(locked=False)["dvc_lock_changed"] is True


def test_a_failed_push_is_an_error(fake_dvc):
    """Outputs that could not reach the remote are not silently local-only."""
    state, _ = fake_dvc
    state["push_rc"] = 1
    with pytest.raises(UserError, match="dvc push"):
        repro.reproduce(locked=False)
