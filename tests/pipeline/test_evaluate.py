"""Stage evaluate: metrics for both models, plot data, the golden cases and the quality gate."""

from __future__ import annotations

import copy
import csv
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline import artifacts, evaluate
from pipeline.evaluate import (
    QualityGateError,
    classification_metrics,
    gate_failure,
    gate_table,
    golden_cases,
    quality_gate,
    read_floors,
)
from pipeline.params import ParamsError

BOUNDED = ("accuracy", "precision", "recall", "f1", "roc_auc")
# reports/metrics.json of the 40-epoch model in dvc.lock: what a healthy model scores.
TODAYS_METRICS = {
    "baseline": {
        "accuracy": 0.982456,
        "f1": 0.97619,
        "log_loss": 0.077746,
        "precision": 0.97619,
        "recall": 0.97619,
        "roc_auc": 0.99537,
    },
    "classifier": {
        "accuracy": 0.964912,
        "f1": 0.953488,
        "log_loss": 0.094204,
        "precision": 0.931818,
        "recall": 0.97619,
        "roc_auc": 0.992063,
    },
    "n_test": 114,
}
# The test split's classes: 42 malignant (0), 72 benign (1).
TEST_TARGET = np.array([0] * 42 + [1] * 72)


@pytest.mark.slow
def test_metrics_have_every_key_for_both_models(evaluated_root: Path):
    """metrics.json has classifier and baseline with every metric, and the test row count."""
    metrics = artifacts.read_json(evaluated_root / artifacts.METRICS_JSON)
    assert set(metrics) == {"classifier", "baseline", "n_test"}
    assert metrics["n_test"] == 114
    for model in ("classifier", "baseline"):
        assert set(metrics[model]) == set(artifacts.METRIC_NAMES)


@pytest.mark.slow
def test_metrics_are_in_range(evaluated_root: Path):
    """Rate metrics lie in [0, 1]; log loss is finite and non-negative (it has no upper bound)."""
    metrics = artifacts.read_json(evaluated_root / artifacts.METRICS_JSON)
    for model in ("classifier", "baseline"):
        for name in BOUNDED:
            assert 0.0 <= metrics[model][name] <= 1.0, (model, name)
        assert 0.0 <= metrics[model]["log_loss"] < math.inf


def test_perfect_predictions_score_one():
    """Confident, correct probabilities give 1 on every rate metric and ~0 log loss."""
    target = np.array([0, 1, 1, 0])
    proba = np.eye(2)[target] * 0.999999 + 0.0000005
    metrics = classification_metrics(target, proba, positive=0)
    assert all(metrics[name] == 1.0 for name in BOUNDED)
    assert metrics["log_loss"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.slow
def test_plot_files_have_the_columns_dvc_plots_read(evaluated_root: Path):
    """confusion.csv has one labelled row per test row; roc and pr have their axes."""
    with (evaluated_root / artifacts.CONFUSION_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 114
    assert {row["actual"] for row in rows} <= {"malignant", "benign"}
    assert (evaluated_root / artifacts.ROC_CSV).read_text().startswith("fpr,tpr\n")
    assert (evaluated_root / artifacts.PR_CSV).read_text().startswith("recall,precision\n")


@pytest.mark.slow
def test_golden_cases_are_four_of_each_class(evaluated_root: Path):
    """golden.json holds the first 4 test rows of each class with the classifier's answer."""
    golden = artifacts.read_json(evaluated_root / artifacts.GOLDEN_JSON)
    cases = golden["cases"]
    assert [case["true_label"] for case in cases] == ["malignant"] * 4 + ["benign"] * 4
    for case in cases:
        assert len(case["features"]) == 30
        probabilities = case["probabilities"]
        assert case["expected_label"] == max(probabilities, key=probabilities.get)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_golden_expected_label_is_the_prediction_not_the_truth():
    """A misclassified row keeps its true label but expects the model's (wrong) answer."""
    proba = np.array([[0.2, 0.8], [0.1, 0.9]])
    golden = golden_cases(np.zeros((2, 1)), np.array([0, 1]), proba, ["x"], ["malignant", "benign"], per_class=1)
    first = golden["cases"][0]
    assert (first["true_label"], first["expected_label"]) == ("malignant", "benign")


def degenerate_metrics() -> dict[str, Any]:
    """metrics.json for a classifier that answers benign for every row, beside today's baseline."""
    always_benign = np.tile([0.3, 0.7], (len(TEST_TARGET), 1))
    return {
        "classifier": classification_metrics(TEST_TARGET, always_benign, positive=0),
        "baseline": TODAYS_METRICS["baseline"],
        "n_test": len(TEST_TARGET),
    }


def test_repository_floors_pass_todays_model(params):
    """The floors in params.yaml let today's classifier through."""
    checks = quality_gate(TODAYS_METRICS, read_floors(params))
    assert [check.metric for check in checks] == ["accuracy", "roc_auc"]
    assert all(check.passed for check in checks)
    assert gate_failure(checks) is None


def test_repository_floors_stop_a_constant_model(params):
    """A model that always answers one class fails on both metrics, named with value, floor and key."""
    floors = read_floors(params)
    checks = quality_gate(degenerate_metrics(), floors)
    assert not any(check.passed for check in checks)
    failure = gate_failure(checks)
    assert failure is not None
    assert failure.startswith(
        f"quality gate failed: the classifier's test accuracy 0.631579 is below its floor {floors['accuracy']:g} "
        "(params.yaml `evaluate.min_accuracy`) and roc_auc 0.5 is below its floor "
    )
    assert failure.endswith("lower a floor only if you know why the model got worse.")


def test_only_the_metric_below_its_floor_is_named():
    """With accuracy above its floor and ROC AUC below, the message names ROC AUC alone."""
    checks = quality_gate(TODAYS_METRICS, {"accuracy": 0.9, "roc_auc": 0.995})
    failure = gate_failure(checks)
    assert failure is not None
    assert "roc_auc 0.992063 is below its floor 0.995" in failure
    assert "accuracy" not in failure


def test_a_value_equal_to_its_floor_passes():
    """The floor is the lowest passing value, not the highest failing one."""
    checks = quality_gate(TODAYS_METRICS, {"accuracy": 0.964912, "roc_auc": 0.992063})
    assert gate_failure(checks) is None


def test_gate_table_shows_margins_over_floor_and_baseline():
    """Each row has the classifier's value, its floor, classifier minus floor and classifier minus baseline."""
    table = gate_table(quality_gate(TODAYS_METRICS, {"accuracy": 0.9, "roc_auc": 0.995}))
    header, accuracy, roc_auc = (line.split() for line in table.splitlines())
    assert header == ["metric", "classifier", "floor", "margin", "baseline", "vs", "baseline", "result"]
    assert accuracy == ["accuracy", "0.9649", "0.9000", "+0.0649", "0.9825", "-0.0175", "pass"]
    assert roc_auc == ["roc_auc", "0.9921", "0.9950", "-0.0029", "0.9954", "-0.0033", "FAIL"]


@pytest.mark.parametrize(
    ("evaluate_section", "message"),
    [
        pytest.param(None, r"no `evaluate` section", id="no-section"),
        pytest.param({"min_accuracy": 0.9}, r"lacks `evaluate\.min_roc_auc`: add it", id="missing-key"),
        pytest.param(
            {"min_accuracy": "0.9", "min_roc_auc": 0.98},
            r"^`evaluate\.min_accuracy` is '0\.9'; set it to a number from 0 to 1, e\.g\. 0\.93\.$",
            id="string",
        ),
        pytest.param({"min_accuracy": True, "min_roc_auc": 0.98}, r"`evaluate\.min_accuracy` is True;", id="bool"),
        pytest.param({"min_accuracy": 0.9, "min_roc_auc": 98}, r"`evaluate\.min_roc_auc` is 98;", id="percent"),
        pytest.param({"min_accuracy": -0.1, "min_roc_auc": 0.98}, r"`evaluate\.min_accuracy` is -0\.1;", id="negative"),
        pytest.param({"min_accuracy": 0.9, "min_roc_auc": math.nan}, r"`evaluate\.min_roc_auc` is nan;", id="nan"),
    ],
)
def test_bad_floors_are_named_in_the_error(evaluate_section: dict | None, message: str):
    """A missing, non-numeric or out-of-range floor raises ParamsError naming the key."""
    params = {} if evaluate_section is None else {"evaluate": evaluate_section}
    with pytest.raises(ParamsError, match=message):
        read_floors(params)


def test_whole_number_floors_are_accepted():
    """0 and 1 are floors too (YAML reads them as ints): no gate, and a perfect score."""
    assert read_floors({"evaluate": {"min_accuracy": 0, "min_roc_auc": 1}}) == {"accuracy": 0.0, "roc_auc": 1.0}


def test_main_exits_on_bad_floors_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """main() turns a bad floor into SystemExit with one sentence, before it reads a model."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"min_accuracy": 0.9}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as excinfo:
        evaluate.main()
    assert str(excinfo.value) == "error: params.yaml lacks `evaluate.min_roc_auc`: add it (see README)."


@pytest.fixture(name="stage_dir")
def fixture_stage_dir(tmp_path: Path, evaluated_root: Path) -> Path:
    """A fresh directory holding what the evaluate stage reads: the prepared data and the models."""
    for directory in (artifacts.PREPARED_DIR, artifacts.CLASSIFIER_DIR):
        shutil.copytree(evaluated_root / directory, tmp_path / directory)
    return tmp_path


def write_floors(root: Path, params: dict[str, Any], accuracy: float, roc_auc: float) -> None:
    """Write the repository's params.yaml to `root` with these floors."""
    params = copy.deepcopy(params)
    params["evaluate"] = {"min_accuracy": accuracy, "min_roc_auc": roc_auc}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.slow
def test_failing_gate_exits_with_metrics_written_and_no_golden(
    stage_dir: Path, params, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Below a floor, main() exits with the sentence after metrics.json and the plots, before golden.json."""
    write_floors(stage_dir, params, accuracy=1.0, roc_auc=0.0)  # the few-epoch model is not perfect
    monkeypatch.chdir(stage_dir)
    with pytest.raises(SystemExit) as excinfo:
        evaluate.main()
    assert str(excinfo.value).startswith("error: quality gate failed: the classifier's test accuracy ")
    assert "is below its floor 1 (params.yaml `evaluate.min_accuracy`)" in str(excinfo.value)
    assert "roc_auc" not in str(excinfo.value)
    assert (stage_dir / artifacts.METRICS_JSON).is_file()
    assert (stage_dir / artifacts.ROC_CSV).is_file()
    assert not (stage_dir / artifacts.GOLDEN_JSON).exists()
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.slow
def test_passing_gate_writes_golden_and_prints_the_table(
    stage_dir: Path, evaluated_root: Path, capsys: pytest.CaptureFixture[str]
):
    """At or above every floor the stage writes golden.json, the same as an ungated run, and prints the gate."""
    metrics = evaluate.evaluate(stage_dir, floors={"accuracy": 0.5, "roc_auc": 0.5})
    out = capsys.readouterr().out
    assert "quality gate passed" in out
    assert f"  accuracy  {metrics['classifier']['accuracy']:.4f}" in out
    for path in (artifacts.METRICS_JSON, artifacts.GOLDEN_JSON):
        assert (stage_dir / path).read_bytes() == (evaluated_root / path).read_bytes()


@pytest.mark.slow
def test_failing_gate_raises_from_the_stage_function(stage_dir: Path):
    """evaluate() itself raises QualityGateError, so a caller other than main() cannot miss it."""
    with pytest.raises(QualityGateError, match="roc_auc"):
        evaluate.evaluate(stage_dir, floors={"accuracy": 0.0, "roc_auc": 1.0})
