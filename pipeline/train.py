"""Stage `train`: fit the Keras classifier and a scikit-learn baseline, reproducibly.

The classifier's first layer is a `keras.layers.Normalization` holding the mean and variance of a
scikit-learn `StandardScaler` fitted on the training features. The scikit-learn preprocessing is
thereby exported inside the model: the saved `model.keras` takes raw features, and the service
needs neither scikit-learn nor a separate scaler file.

Two runs give byte-identical artifacts (`dvc repro --force` leaves `dvc.lock` unchanged):
`configure_determinism` fixes seeds, op determinism and thread counts, and `repack_keras_archive`
removes what `model.save` puts into the `.keras` zip that changes from run to run: zip entry
timestamps, `date_saved` in metadata.json, and the `shared_object_id`s in config.json, which are
Python `id()`s (memory addresses) of objects shared between layers, such as the dtype policy. The
weights file inside (HDF5 via h5py) needs no fixing: h5py creates datasets without timestamps
(`track_times=False`) and Keras writes the variables in a fixed order.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline import artifacts
from pipeline.params import ParamsError, load_params, section

if TYPE_CHECKING:
    import keras

KEYS = ("seed", "epochs", "batch_size", "hidden_units", "dropout", "learning_rate",
        "validation_split")  # fmt: skip
BASELINE_KEYS = ("C", "max_iter")
N_CLASSES = 2
HISTORY_COLUMNS = ("loss", "val_loss", "accuracy", "val_accuracy")

# Entries of a re-packed zip: the earliest date a zip can hold, and rw-r--r-- regular files.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
ZIP_DIR_MODE = 0o040755
ZIP_UNIX = 3  # "made by" Unix on every platform, so permissions read the same everywhere
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
FIXED_DATE_SAVED = "1980-01-01@00:00:00"


def configure_determinism(seed: int) -> None:
    """Make Keras training and inference reproducible to the byte on one CPU type.

    The environment variables only take effect if TensorFlow is not imported yet, which is why the
    pipeline imports TensorFlow inside functions. Determinism across CPU types (AVX2 vs AVX-512)
    is not promised: the float kernels differ.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # oneDNN chooses its kernels at run time by CPU features: with it on, the trained weights
    # differ from those of the plain Eigen kernels (measured), so the result would depend on it.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # Eigen shards large reductions by thread count; one thread makes the summation order the same
    # on a 2-core CI runner and a 16-core workstation. The model is small, so it costs little.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ INFO lines about CPU features
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # the runtime already started in this process (tests): the env variables decided
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow seeds at once
    tf.config.experimental.enable_op_determinism()


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

    scaler = StandardScaler().fit(features)
    classifier = build_classifier(
        scaler.mean_, scaler.var_, list(params["hidden_units"]), params["dropout"]
    )
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


def renumber_shared_objects(config: Any, ids: dict[int, int] | None = None) -> Any:
    """Replace every `shared_object_id` in a Keras config by 1, 2, ... in order of appearance.

    Keras only compares these ids with each other when loading, so a consistent renumbering keeps
    the sharing and drops the memory addresses. Returns a new structure; `ids` is the mapping so far.
    """
    ids = {} if ids is None else ids
    if isinstance(config, list):
        return [renumber_shared_objects(item, ids) for item in config]
    if not isinstance(config, dict):
        return config
    renumbered = {}
    for key, value in config.items():
        if key == "shared_object_id":
            renumbered[key] = ids.setdefault(value, len(ids) + 1)
        else:
            renumbered[key] = renumber_shared_objects(value, ids)
    return renumbered


def _normalized_entry(name: str, content: bytes) -> bytes:
    """The content of zip entry `name` with Keras' run-dependent values replaced."""
    if name == KERAS_METADATA:
        metadata = json.loads(content)
        metadata["date_saved"] = FIXED_DATE_SAVED
        return json.dumps(metadata).encode()
    if name == KERAS_CONFIG:
        return json.dumps(renumber_shared_objects(json.loads(content))).encode()
    return content


def repack_keras_archive(data: bytes) -> bytes:
    """Return the `.keras` zip `data` re-packed so that equal content gives equal bytes.

    Entries are sorted by name and stored uncompressed (compressed bytes depend on the zlib build)
    with a fixed date and fixed permissions. In metadata.json `date_saved` becomes
    FIXED_DATE_SAVED; in config.json shared object ids are renumbered. Other entries, and any other
    zip, keep their content.
    """
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target,
    ):
        for name in sorted(source.namelist()):
            content = _normalized_entry(name, source.read(name))
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.create_system = ZIP_UNIX
            info.external_attr = (ZIP_DIR_MODE if name.endswith("/") else ZIP_FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_STORED
            target.writestr(info, content)
    return out.getvalue()


def keras_model_bytes(model: keras.Model) -> bytes:
    """Save `model` in the `.keras` format and return the re-packed, deterministic bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"  # Keras insists on the suffix
        model.save(path)
        return repack_keras_archive(path.read_bytes())


def joblib_bytes(obj: Any) -> bytes:
    """Pickle `obj` with joblib (uncompressed: pickle output is deterministic for equal objects)."""
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


def history_rows(history: dict[str, list[float]]) -> list[list[Any]]:
    """Training history as CSV rows: epoch (from 1), then HISTORY_COLUMNS rounded."""
    epochs = len(history["loss"])
    return [
        [epoch + 1, *(artifacts.rounded(history[column][epoch]) for column in HISTORY_COLUMNS)]
        for epoch in range(epochs)
    ]


def train(
    params: dict[str, Any], baseline_params: dict[str, Any], root: Path = Path(".")
) -> TrainedModels:
    """Run the stage under `root`: read the train split, fit both models, write the artifacts."""
    features, target, _ = artifacts.read_split(root / artifacts.TRAIN_CSV)
    models = train_models(features, target, params, baseline_params)
    artifacts.write_bytes(root / artifacts.MODEL_FILE, keras_model_bytes(models.classifier))
    artifacts.write_bytes(root / artifacts.BASELINE_FILE, joblib_bytes(models.baseline))
    artifacts.write_csv(
        root / artifacts.HISTORY_CSV, ["epoch", *HISTORY_COLUMNS], history_rows(models.history)
    )
    last = models.history
    print(
        f"train: {len(last['loss'])} epochs, loss {last['loss'][-1]:.4f}, "
        f"val_loss {last['val_loss'][-1]:.4f}, val_accuracy {last['val_accuracy'][-1]:.4f} "
        f"-> {artifacts.CLASSIFIER_DIR}"
    )
    return models


def main() -> None:
    """Entry point of `dvc repro`: read `train` and `baseline` from params.yaml, run the stage."""
    try:
        params = load_params()
        train(section(params, "train", KEYS), section(params, "baseline", BASELINE_KEYS))
    except ParamsError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
