"""Stage evaluate: metrics for both models, plot data and the golden cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts
from pipeline.evaluate import classification_metrics, golden_cases

BOUNDED = ("accuracy", "precision", "recall", "f1", "roc_auc")


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
