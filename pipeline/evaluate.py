"""Stage `evaluate`: score the classifier and the baseline on the test split.

Writes the metrics DVC tracks (`dvc metrics show`), the data behind the plots (`dvc plots show`),
and `golden.json`: fixed test rows with the classifier's answers, which the contract tests send to
the served container and compare against.

Precision, recall, F1 and the ROC and precision-recall curves treat `artifacts.POSITIVE_CLASS`
(malignant) as the positive class: a missed malignant tumour is the costly error.
"""

from __future__ import annotations

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

from pipeline import artifacts
from pipeline.reproducible import configure_determinism

if TYPE_CHECKING:
    import keras

GOLDEN_ROWS_PER_CLASS = 4


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


def evaluate(root: Path = Path(".")) -> dict[str, Any]:
    """Run the stage under `root`: score both models on the test split, write metrics and plots.

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
    artifacts.write_json(
        root / artifacts.GOLDEN_JSON,
        golden_cases(features, target, classifier_proba, feature_names, class_names),
    )
    print(
        "evaluate: "
        + ", ".join(
            f"{name} {metrics['classifier'][name]:.4f} (baseline {metrics['baseline'][name]:.4f})"
            for name in ("accuracy", "recall", "roc_auc")
        )
        + f" on {len(target)} test rows -> {artifacts.METRICS_JSON}"
    )
    return metrics


def main() -> None:
    """Entry point of `dvc repro`: run the stage (it reads no params; its inputs decide)."""
    evaluate()


if __name__ == "__main__":
    main()
