"""Stage `prepare`: load the data set and split it into train and test CSVs plus a schema.

The data set is scikit-learn's Wisconsin breast cancer set (569 rows, 30 numeric features, classes
malignant and benign). It ships inside scikit-learn, so the pipeline never downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from pipeline import artifacts
from pipeline.params import ParamsError, load_params, section

KEYS = ("dataset", "test_size", "seed")
SUPPORTED_DATASETS = ("breast_cancer",)


@dataclass(frozen=True)
class Dataset:
    """Features, integer targets and the names of both."""

    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    class_names: list[str]


@dataclass(frozen=True)
class Split:
    """A stratified train/test split of a `Dataset`."""

    train_features: np.ndarray
    train_target: np.ndarray
    test_features: np.ndarray
    test_target: np.ndarray


def load_dataset(name: str = "breast_cancer") -> Dataset:
    """Load data set `name`; feature names get underscores for spaces (they become CSV columns)."""
    if name not in SUPPORTED_DATASETS:
        raise ParamsError(f"`data.dataset` is {name!r}; this pipeline knows {', '.join(SUPPORTED_DATASETS)}.")
    bunch = load_breast_cancer()
    return Dataset(
        features=np.asarray(bunch.data, dtype=np.float64),
        target=np.asarray(bunch.target, dtype=np.int64),
        feature_names=[str(n).replace(" ", "_") for n in bunch.feature_names],
        # Class index i is class_names[i]: 0 malignant, 1 benign (scikit-learn's order).
        class_names=[str(n) for n in bunch.target_names],
    )


def split_dataset(dataset: Dataset, test_size: float, seed: int) -> Split:
    """Split `dataset` into train and test, stratified by class and fixed by `seed`."""
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features,
        dataset.target,
        test_size=test_size,
        random_state=seed,
        stratify=dataset.target,
    )
    return Split(x_train, y_train, x_test, y_test)


def schema_of(dataset: Dataset) -> dict[str, Any]:
    """The schema every later stage and the service rely on: column order and class order."""
    return {
        "feature_names": dataset.feature_names,
        "class_names": dataset.class_names,
        "n_features": len(dataset.feature_names),
    }


def prepare(params: dict[str, Any], root: Path = Path(".")) -> dict[str, Any]:
    """Run the stage under `root` with the `data` params: write both splits and the schema.

    Returns the schema.
    """
    dataset = load_dataset(params["dataset"])
    split = split_dataset(dataset, params["test_size"], params["seed"])
    names = dataset.feature_names
    artifacts.write_split(root / artifacts.TRAIN_CSV, split.train_features, split.train_target, names)
    artifacts.write_split(root / artifacts.TEST_CSV, split.test_features, split.test_target, names)
    schema = schema_of(dataset)
    artifacts.write_json(root / artifacts.SCHEMA_JSON, schema)
    print(
        f"prepare: {len(split.train_target)} train rows, {len(split.test_target)} test rows, "
        f"{schema['n_features']} features -> {artifacts.PREPARED_DIR}"
    )
    return schema


def main() -> None:
    """Entry point of `dvc repro`: read `data` from params.yaml and run the stage."""
    try:
        prepare(section(load_params(), "data", KEYS))
    except ParamsError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
