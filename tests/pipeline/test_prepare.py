"""Stage prepare: a deterministic, stratified split written as CSVs plus a schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts
from pipeline.params import ParamsError
from pipeline.prepare import load_dataset, split_dataset


@pytest.fixture(scope="module", name="dataset")
def fixture_dataset():
    """The breast cancer data set as the pipeline loads it."""
    return load_dataset("breast_cancer")


def test_split_is_deterministic(dataset):
    """The same seed gives the same split; another seed gives another split."""
    first, second = split_dataset(dataset, 0.2, 42), split_dataset(dataset, 0.2, 42)
    other = split_dataset(dataset, 0.2, 7)
    np.testing.assert_array_equal(first.train_features, second.train_features)
    np.testing.assert_array_equal(first.test_target, second.test_target)
    assert not np.array_equal(first.test_features, other.test_features)


def test_split_is_stratified(dataset):
    """Each class has the same share of the test split as of the whole data set (within a row)."""
    split = split_dataset(dataset, 0.2, 42)
    n_test = len(split.test_target)
    assert n_test == round(0.2 * len(dataset.target))
    for label in (0, 1):
        expected = np.mean(dataset.target == label) * n_test
        assert abs(np.sum(split.test_target == label) - expected) <= 1


def test_unknown_dataset_is_a_params_error():
    """A data set name the pipeline does not know fails with a message naming the param."""
    with pytest.raises(ParamsError, match=r"data\.dataset"):
        load_dataset("iris")


def test_prepared_files_have_the_documented_layout(prepared_root: Path, dataset):
    """CSV headers are the feature names with underscores then `target`; the schema matches."""
    header = (prepared_root / artifacts.TRAIN_CSV).read_text().splitlines()[0].split(",")
    assert header[-1] == "target"
    assert header[:-1] == dataset.feature_names
    assert all(" " not in name for name in header)
    schema = artifacts.read_json(prepared_root / artifacts.SCHEMA_JSON)
    assert schema == {
        "feature_names": dataset.feature_names,
        "class_names": ["malignant", "benign"],
        "n_features": 30,
    }


def test_csv_round_trip_is_exact(prepared_root: Path, dataset, params):
    """Reading the test CSV back gives exactly the in-memory split (floats are written with repr)."""
    split = split_dataset(dataset, params["data"]["test_size"], params["data"]["seed"])
    features, target, names = artifacts.read_split(prepared_root / artifacts.TEST_CSV)
    np.testing.assert_array_equal(features, split.test_features)
    np.testing.assert_array_equal(target, split.test_target)
    assert names == dataset.feature_names
