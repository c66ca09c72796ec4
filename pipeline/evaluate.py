"""Stage `evaluate`: score the classifier and the baseline on the test split.

Writes the metrics DVC tracks (`dvc metrics show`), the data behind the plots (`dvc plots show`),
and `golden.json`: fixed test rows with the classifier's answers, which the contract tests send to
the served container and compare against.

Precision, recall, F1 and the ROC and precision-recall curves treat `artifacts.POSITIVE_CLASS`
(malignant) as the positive class: a missed malignant tumour is the costly error.

The stage is also the model-quality gate: the classifier's test accuracy and ROC AUC must reach the
floors in params.yaml's `evaluate` section. metrics.json and the plots are written first, so a
failing model can be inspected (`dvc metrics show`, `dvc plots show`); then a model below a floor
exits non-zero before golden.json is written. `dvc repro` fails there: DVC deleted the stage's old
outputs before running it, records nothing of a failed stage in its cache or dvc.lock, and runs
neither export nor package. A bad model thus gets no golden cases for the container to pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from pipeline import artifacts, tracking
from pipeline.params import ParamsError, load_params, section
from pipeline.reproducible import configure_determinism
from pipeline.tracking import TrackingError

if TYPE_CHECKING:
    import keras

GOLDEN_ROWS_PER_CLASS = 4
# Gated classifier metric (metrics.json's name) -> the params.yaml `evaluate` key holding its floor.
FLOOR_KEYS = {"accuracy": "min_accuracy", "roc_auc": "min_roc_auc"}


class QualityGateError(Exception):
    """The classifier scored below a floor in params.yaml's `evaluate` section."""


@dataclass(frozen=True)
class GateCheck:
    """One gated metric: the classifier's value, its floor, and the baseline's value beside it."""

    metric: str
    value: float
    floor: float
    baseline: float

    @property
    def passed(self) -> bool:
        """Whether the classifier reached the floor (a value equal to the floor passes)."""
        return self.value >= self.floor


def load_classifier(path: Path) -> keras.Model:
    """Load the saved Keras classifier for inference (no optimizer state), as the service does."""
    configure_determinism(seed=0)  # inference has no randomness; this pins kernels and threads
    import keras

    return keras.saving.load_model(path, compile=False)


def classifier_probabilities(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """Class probabilities of the Keras `model` for raw `features`, as float64 (n_rows, n_classes).

    Rows are renormalized in float64: float32 softmax rows sum to 1 only within ~1e-7, which
    scikit-learn's log_loss warns about.
    """
    proba = np.asarray(model.predict(features.astype(np.float32), verbose=0), dtype=np.float64)
    return proba / proba.sum(axis=1, keepdims=True)


def classification_metrics(target: np.ndarray, proba: np.ndarray, positive: int) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC AUC and log loss of probabilities `proba`.

    `positive` is the index of the positive class for precision, recall, F1 and ROC AUC.
    """
    predicted = proba.argmax(axis=1)
    is_positive = target == positive
    values = {
        "accuracy": accuracy_score(target, predicted),
        "precision": precision_score(target, predicted, pos_label=positive, zero_division=0),
        "recall": recall_score(target, predicted, pos_label=positive, zero_division=0),
        "f1": f1_score(target, predicted, pos_label=positive, zero_division=0),
        "roc_auc": roc_auc_score(is_positive, proba[:, positive]),
        "log_loss": log_loss(target, proba, labels=list(range(proba.shape[1]))),
    }
    return {name: artifacts.rounded(values[name]) for name in artifacts.METRIC_NAMES}


def confusion_rows(target: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> list:
    """One (actual, predicted) row of class names per test row, the shape DVC's confusion plot reads."""
    return [[class_names[a], class_names[p]] for a, p in zip(target, predicted, strict=True)]


def roc_rows(target: np.ndarray, scores: np.ndarray, positive: int) -> list[list[float]]:
    """ROC curve points (fpr, tpr) for the positive class."""
    fpr, tpr, _ = roc_curve(target == positive, scores)
    return [[artifacts.rounded(f), artifacts.rounded(t)] for f, t in zip(fpr, tpr, strict=True)]


def pr_rows(target: np.ndarray, scores: np.ndarray, positive: int) -> list[list[float]]:
    """Precision-recall curve points (recall, precision) for the positive class."""
    precision, recall, _ = precision_recall_curve(target == positive, scores)
    return [[artifacts.rounded(r), artifacts.rounded(p)] for r, p in zip(recall, precision, strict=True)]


def golden_cases(
    features: np.ndarray,
    target: np.ndarray,
    proba: np.ndarray,
    feature_names: list[str],
    class_names: list[str],
    per_class: int = GOLDEN_ROWS_PER_CLASS,
) -> dict[str, Any]:
    """The first `per_class` test rows of each class, with the classifier's answer for each.

    `expected_label` is the classifier's prediction (what the service must answer), which can
    differ from `true_label` where the model is wrong. Probabilities are rounded to six decimals,
    as the service rounds them; compare with a tolerance, since float kernels differ by CPU.
    """
    cases = []
    for class_index in range(len(class_names)):
        for row in np.flatnonzero(target == class_index)[:per_class]:
            cases.append(
                {
                    "features": [float(v) for v in features[row]],
                    "true_label": class_names[class_index],
                    "expected_label": class_names[int(proba[row].argmax())],
                    "probabilities": {
                        name: artifacts.rounded(p) for name, p in zip(class_names, proba[row], strict=True)
                    },
                }
            )
    return {"feature_names": feature_names, "class_names": class_names, "cases": cases}


def read_floors(params: dict[str, Any]) -> dict[str, float]:
    """The quality floors in params.yaml's `evaluate` section, keyed by metric name.

    Raises ParamsError if a key is missing or a floor is not a number from 0 to 1.
    """
    values = section(params, "evaluate", FLOOR_KEYS.values())
    floors = {}
    for metric, key in FLOOR_KEYS.items():
        value = values[key]
        # bool is an int to Python, but `min_accuracy: yes` is a typo, not a floor of 1.
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ParamsError(f"`evaluate.{key}` is {value!r}; set it to a number from 0 to 1, e.g. 0.93.")
        floors[metric] = float(value)
    return floors


def quality_gate(metrics: dict[str, Any], floors: dict[str, float]) -> list[GateCheck]:
    """Check the classifier in `metrics` (metrics.json's shape) against `floors`, one check per floor."""
    return [
        GateCheck(metric, metrics["classifier"][metric], floor, metrics["baseline"][metric])
        for metric, floor in floors.items()
    ]


def gate_table(checks: list[GateCheck]) -> str:
    """The gate as a table: each metric, its floor, the margin over it, and the margin over the baseline.

    Margins are classifier minus floor and classifier minus baseline: negative is below.
    """
    rows = [("metric", "classifier", "floor", "margin", "baseline", "vs baseline", "result")]
    rows += [
        (
            check.metric,
            f"{check.value:.4f}",
            f"{check.floor:.4f}",
            f"{check.value - check.floor:+.4f}",
            f"{check.baseline:.4f}",
            f"{check.value - check.baseline:+.4f}",
            "pass" if check.passed else "FAIL",
        )
        for check in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def gate_failure(checks: list[GateCheck]) -> str | None:
    """One sentence naming every metric below its floor and what to do, or None if all passed."""
    failed = [check for check in checks if not check.passed]
    if not failed:
        return None
    below = " and ".join(
        f"{c.metric} {c.value:g} is below its floor {c.floor:g} (params.yaml `evaluate.{FLOOR_KEYS[c.metric]}`)"
        for c in failed
    )
    return (
        f"quality gate failed: the classifier's test {below}; "
        f"see {artifacts.METRICS_JSON} and `dvc plots show`, fix the model or its training params, "
        "and lower a floor only if you know why the model got worse."
    )


def evaluate(root: Path = Path("."), floors: dict[str, float] | None = None) -> dict[str, Any]:
    """Run the stage under `root`: score both models on the test split, write metrics and plots.

    With `floors` (from `read_floors`), the classifier is gated after metrics.json and the plots
    are written and before golden.json: a metric below its floor raises QualityGateError and
    golden.json is not written. Without floors nothing is gated (the tests' few-epoch models).
    Returns the metrics as written to metrics.json.
    """
    features, target, feature_names = artifacts.read_split(root / artifacts.TEST_CSV)
    class_names = artifacts.read_json(root / artifacts.SCHEMA_JSON)["class_names"]
    positive = class_names.index(artifacts.POSITIVE_CLASS)

    classifier_proba = classifier_probabilities(load_classifier(root / artifacts.MODEL_FILE), features)
    baseline_proba = joblib.load(root / artifacts.BASELINE_FILE).predict_proba(features)
    metrics = {
        "classifier": classification_metrics(target, classifier_proba, positive),
        "baseline": classification_metrics(target, baseline_proba, positive),
        "n_test": len(target),
    }
    artifacts.write_json(root / artifacts.METRICS_JSON, metrics)

    scores = classifier_proba[:, positive]
    predicted = classifier_proba.argmax(axis=1)
    artifacts.write_csv(
        root / artifacts.CONFUSION_CSV,
        ["actual", "predicted"],
        confusion_rows(target, predicted, class_names),
    )
    artifacts.write_csv(root / artifacts.ROC_CSV, ["fpr", "tpr"], roc_rows(target, scores, positive))
    artifacts.write_csv(root / artifacts.PR_CSV, ["recall", "precision"], pr_rows(target, scores, positive))
    print(
        "evaluate: "
        + ", ".join(
            f"{name} {metrics['classifier'][name]:.4f} (baseline {metrics['baseline'][name]:.4f})"
            for name in ("accuracy", "recall", "roc_auc")
        )
        + f" on {len(target)} test rows -> {artifacts.METRICS_JSON}"
    )
    if floors is not None:
        checks = quality_gate(metrics, floors)
        print("evaluate: quality gate, the classifier against the floors in params.yaml `evaluate`")
        print(gate_table(checks))
        failure = gate_failure(checks)
        if failure:
            raise QualityGateError(failure)
        print(f"evaluate: quality gate passed -> {artifacts.GOLDEN_JSON}")
    artifacts.write_json(
        root / artifacts.GOLDEN_JSON,
        golden_cases(features, target, classifier_proba, feature_names, class_names),
    )
    return metrics


def main() -> None:
    """Entry point of `dvc repro`: read the floors in params.yaml's `evaluate`, run and gate the stage.

    Bad params exit before any work; a classifier below a floor exits non-zero after writing
    metrics.json and the plots, without golden.json (see the module docstring). With
    MLFLOW_TRACKING_URI set, the outputs are logged to train's MLflow run once written.
    """
    try:
        params = load_params()
        floors = read_floors(params)
        with tracking.resume_run(params) as run:  # a gate failure marks the MLflow run FAILED
            evaluate(floors=floors)
            run.log_evaluation(params)
    except (ParamsError, QualityGateError, TrackingError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
