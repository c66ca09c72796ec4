"""Stage `train`: fit the Keras classifier and a scikit-learn baseline, reproducibly.

The classifier's first layer is a `keras.layers.Normalization` holding the mean and variance of a
scikit-learn `StandardScaler` fitted on the training features. The scikit-learn preprocessing is
thereby exported inside the model: the saved `model.keras` takes raw features, and the service
needs neither scikit-learn nor a separate scaler file.

Both are saved byte-reproducibly (see `pipeline.reproducible`), so `dvc repro --force` leaves
`dvc.lock` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline import artifacts, tracking
from pipeline.numerics import check_pinned
from pipeline.params import ParamsError, load_params, section
from pipeline.reproducible import configure_determinism, joblib_bytes, keras_model_bytes
from pipeline.tracking import TrackingError

if TYPE_CHECKING:
    import keras

KEYS = ("seed", "epochs", "batch_size", "hidden_units", "dropout", "learning_rate", "validation_split")
BASELINE_KEYS = ("C", "max_iter")
N_CLASSES = 2
HISTORY_COLUMNS = ("loss", "val_loss", "accuracy", "val_accuracy")


def build_classifier(
    mean: np.ndarray,
    variance: np.ndarray,
    hidden_units: list[int],
    dropout: float,
    n_classes: int = N_CLASSES,
) -> keras.Model:
    """Build the classifier: Normalization(mean, variance), Dense+ReLU+Dropout blocks, softmax."""
    import keras

    layers: list[keras.Layer] = [
        keras.Input(shape=(len(mean),), name="features"),
        # The fitted StandardScaler, as a layer: (x - mean) / sqrt(variance).
        keras.layers.Normalization(mean=mean, variance=variance, name="standard_scaler"),
    ]
    for i, units in enumerate(hidden_units):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"hidden_{i}"))
        layers.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="probabilities"))
    return keras.Sequential(layers, name="classifier")


@dataclass
class TrainedModels:
    """The outputs of `train_models`."""

    classifier: keras.Model
    baseline: Pipeline
    scaler: StandardScaler
    history: dict[str, list[float]]


def train_models(
    features: np.ndarray,
    target: np.ndarray,
    params: dict[str, Any],
    baseline_params: dict[str, Any],
) -> TrainedModels:
    """Fit the scaler, the Keras classifier (`train` params) and the baseline (`baseline` params).

    Keras holds out the last `validation_split` of the rows for `val_*` history; the split is
    already shuffled by `prepare`, so that tail is a random sample.
    """
    configure_determinism(params["seed"])
    import keras

    print(f"train: {check_pinned()}")

    scaler = StandardScaler().fit(features)
    classifier = build_classifier(scaler.mean_, scaler.var_, list(params["hidden_units"]), params["dropout"])
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fit = classifier.fit(
        features.astype(np.float32),
        target,
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        validation_split=params["validation_split"],
        verbose=0,
    )
    # The baseline scales with its own copy of the scaler so that baseline.joblib, like the Keras
    # model, takes raw features.
    baseline = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=baseline_params["C"], max_iter=baseline_params["max_iter"]),
    ).fit(features, target)
    return TrainedModels(classifier, baseline, scaler, dict(fit.history))


def history_rows(history: dict[str, list[float]]) -> list[list[Any]]:
    """Training history as CSV rows: epoch (from 1), then HISTORY_COLUMNS rounded."""
    epochs = len(history["loss"])
    return [
        [epoch + 1, *(artifacts.rounded(history[column][epoch]) for column in HISTORY_COLUMNS)]
        for epoch in range(epochs)
    ]


def train(params: dict[str, Any], baseline_params: dict[str, Any], root: Path = Path(".")) -> TrainedModels:
    """Run the stage under `root`: read the train split, fit both models, write the artifacts."""
    features, target, _ = artifacts.read_split(root / artifacts.TRAIN_CSV)
    models = train_models(features, target, params, baseline_params)
    artifacts.write_bytes(root / artifacts.MODEL_FILE, keras_model_bytes(models.classifier))
    artifacts.write_bytes(root / artifacts.BASELINE_FILE, joblib_bytes(models.baseline))
    artifacts.write_csv(root / artifacts.HISTORY_CSV, ["epoch", *HISTORY_COLUMNS], history_rows(models.history))
    history = models.history
    print(
        f"train: {len(history['loss'])} epochs, loss {history['loss'][-1]:.4f}, "
        f"val_loss {history['val_loss'][-1]:.4f}, val_accuracy {history['val_accuracy'][-1]:.4f} "
        f"-> {artifacts.CLASSIFIER_DIR}"
    )
    return models


def main() -> None:
    """Entry point of `dvc repro`: read `train` and `baseline` from params.yaml, run the stage.

    With MLFLOW_TRACKING_URI set, the MLflow run starts before training and gets the history after
    the outputs are written (pipeline.tracking).
    """
    try:
        params = load_params()
        train_params, baseline_params = section(params, "train", KEYS), section(params, "baseline", BASELINE_KEYS)
        with tracking.start_run(params) as run:
            train(train_params, baseline_params)
            run.log_training()
    except (ParamsError, TrackingError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
