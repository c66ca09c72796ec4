"""Fixtures for the pipeline tests: the stages run once per session in a temporary directory.

Training uses the repository's params.yaml with few epochs: the tests check behaviour (shapes,
determinism, the exported scaler), not model quality. Training in-process pins TensorFlow to one
thread and deterministic ops for the rest of the test session, as in `dvc repro`.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest

from pipeline import evaluate, export, package, prepare, train
from pipeline.params import load_params

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_EPOCHS = 3
# Keras 3.15 saves TensorFlow variables with np.array(variable, copy=False); TensorFlow 2.21's
# __array__ lacks the `copy` argument NumPy 2 passes, so NumPy warns. Harmless, and not ours.
KERAS_SAVE_WARNING = r"__array__ implementation doesn't accept a copy keyword"


@pytest.fixture(scope="session", name="params")
def fixture_params() -> dict[str, Any]:
    """The repository's params.yaml with `train.epochs` cut to FAST_EPOCHS (do not modify it)."""
    params = copy.deepcopy(load_params(REPO_ROOT / "params.yaml"))
    params["train"]["epochs"] = FAST_EPOCHS
    return params


@pytest.fixture(scope="session", name="prepared_root")
def fixture_prepared_root(tmp_path_factory: pytest.TempPathFactory, params) -> Path:
    """A directory where the prepare stage has run."""
    root = tmp_path_factory.mktemp("pipeline")
    prepare.prepare(params["data"], root)
    return root


@pytest.fixture(scope="session", name="trained")
def fixture_trained(prepared_root: Path, params) -> train.TrainedModels:
    """The in-memory result of the train stage, run in `prepared_root`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", KERAS_SAVE_WARNING, DeprecationWarning)
        return train.train(params["train"], params["baseline"], prepared_root)


@pytest.fixture(scope="session", name="evaluated_root")
def fixture_evaluated_root(prepared_root: Path, trained) -> Path:
    """`prepared_root` after the train and evaluate stages."""
    evaluate.evaluate(prepared_root)
    return prepared_root


@pytest.fixture(scope="session", name="exported_root")
def fixture_exported_root(evaluated_root: Path) -> Path:
    """`evaluated_root` after the export stage."""
    export.export(evaluated_root)
    return evaluated_root


@pytest.fixture(scope="session", name="packaged_root")
def fixture_packaged_root(exported_root: Path, params) -> Path:
    """`prepared_root` after every stage, package included."""
    package.package(params, exported_root)
    return exported_root
