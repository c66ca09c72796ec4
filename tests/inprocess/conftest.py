"""Fixtures that serve the real service in this process: BentoML's own ASGI app, the real model.

Between the unit tests (the middlewares on a Starlette stand-in) and the contract tests (the built
image): `Classifier.to_asgi()` builds the app `bentoml serve` runs in its worker, with the prompt
timeout, the error shape, the request guard and BentoML's metrics and dispatch, and Starlette's
TestClient drives its lifespan, so `Classifier.__init__` loads models/model.onnx from a BentoML
store of its own. Run it alone, `nox -s inprocess`: /metrics needs PROMETHEUS_MULTIPROC_DIR set
before anything imports prometheus_client, and the service changes process-wide state (see
`fixture_client`).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from starlette.testclient import TestClient

from bentos.classifier import model_files
from bentos.classifier.runtime import Model, RuntimeSettings, load_model
from ci.image.bento import import_model
from ci.project import GOLDEN, MANIFEST, ROOT, SERVED_MODEL, UserError, bento_spec, load_manifest
from pipeline import artifacts

SERVICE_FILE = ROOT / "bentos/classifier/service.py"
TEST_SPLIT = ROOT / artifacts.TEST_CSV
PIPELINE_OUTPUTS = (MANIFEST, SERVED_MODEL, GOLDEN, TEST_SPLIT)
# Deprecations BentoML 1.4.39 triggers in its dependencies, which pytest would turn into errors
# (and, on BentoML's dispatch path, into a 500): pathspec's when its build settings are imported,
# pydantic 2.11's when it builds a service's IO models and on every request it dispatches.
BENTOML_WARNINGS = (
    r"ignore:GitWildMatchPattern \('gitwildmatch'\) is deprecated:DeprecationWarning",
    r"ignore:The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated:DeprecationWarning",
    r"ignore:Accessing the 'model_fields' attribute on the instance is deprecated:DeprecationWarning",
)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test of this tier (and the session fixtures it sets up) ignores BentoML's deprecations."""
    for spec in BENTOML_WARNINGS:
        item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(scope="session", name="manifest")
def fixture_manifest() -> dict:
    """models/manifest.json, once every pipeline output this tier reads is known to be there."""
    missing = [path.relative_to(ROOT).as_posix() for path in PIPELINE_OUTPUTS if not path.is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `dvc repro` (or `nox -s repro`) first.", pytrace=False)
    return load_manifest()


@pytest.fixture(scope="session", name="golden")
def fixture_golden(manifest: dict) -> dict:
    """reports/golden.json: fixed inputs with the pipeline's labels and probabilities."""
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="session", name="test_split")
def fixture_test_split(manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """The held-out rows the pipeline evaluated the model on: (features, class index)."""
    features, target, _ = artifacts.read_split(TEST_SPLIT)
    return features, target


@pytest.fixture(scope="session", name="settings")
def fixture_settings() -> dict:
    """params.yaml `serve`, as the service reads it."""
    return model_files.load_settings()


@pytest.fixture(scope="session", name="reference")
def fixture_reference(manifest: dict, settings: dict) -> Model:
    """models/model.onnx opened directly with the service's runtime settings, no server around it."""
    return load_model(str(SERVED_MODEL), RuntimeSettings.from_params(settings["runtime"]))


@pytest.fixture(scope="session", name="model_tag")
def fixture_model_tag(tmp_path_factory: pytest.TempPathFactory, manifest: dict) -> Iterator[str]:
    """The manifest's model imported into a temporary BentoML store, and MODEL_TAG naming it.

    BentoML resolves its home once, on first use, and other tests in this process may have used it
    already: the store is set on BentoML's container, which holds whether or not it was resolved
    (the environment variable alone would not). BENTOML_HOME is set too, for ci/image/bento.py, which
    would otherwise default it to build/bentoml for the rest of the process.
    """
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path_factory.mktemp("bentoml")
    (home / "models").mkdir()
    with (
        pytest.MonkeyPatch.context() as env,
        BentoMLContainer.bentoml_home.patch(str(home)),
        BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))),
    ):
        env.setenv("BENTOML_HOME", str(home))
        # What `bentoml serve` gives its workers: the directory of the multiprocess metrics files.
        metrics_dir = Path(BentoMLContainer.prometheus_multiproc_dir.get())
        metrics_dir.mkdir()
        env.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        try:
            tag = import_model(manifest, bento_spec())
        except UserError as exc:
            pytest.fail(str(exc), pytrace=False)
        env.setenv("MODEL_TAG", tag)
        yield tag
    close_metrics_files()


def close_metrics_files() -> None:
    """Close the metrics files prometheus_client keeps open for the process's life (a worker's)."""
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        if getattr(values.ValueClass, "_multiprocess", False):
            values.ValueClass.close_all_files()


# The ways the service answers: the guard calls the model (params.yaml's default), BentoML's own
# dispatch does, or BentoML's dispatch with adaptive batching (the /v2 routes go through it too).
MODES = {
    "direct": {"direct_predict": True, "adaptive_batching": False},
    "dispatch": {"direct_predict": False, "adaptive_batching": False},
    "batched": {"direct_predict": False, "adaptive_batching": True},
}


def load_service(mode: str) -> ModuleType:
    """A fresh copy of bentos/classifier/service.py, built with the `serve` settings of MODES[mode].

    The module reads params.yaml when imported, so each setting needs its own module object (under
    its own name: BentoML resolves the API's type hints through sys.modules). params.yaml is read as
    usual; only the mode's keys are overridden. (Patching model_files.PARAMS_FILE would not do: it is
    load_settings' default argument, bound when the function was defined.)
    """
    name = f"inprocess_service_{mode}"
    spec = importlib.util.spec_from_file_location(name, SERVICE_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # fixture_client removes it
    read_settings = model_files.load_settings
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_files, "load_settings", lambda: {**read_settings(), **MODES[mode]})
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", name="mode", params=list(MODES))
def fixture_mode(request: pytest.FixtureRequest) -> str:
    """Every way the service answers (MODES): every test using `client` runs on each."""
    return request.param


@pytest.fixture(scope="session", name="direct_predict")
def fixture_direct_predict(mode: str) -> bool:
    """Whether the guard answers /predict itself in this mode."""
    return MODES[mode]["direct_predict"]


@pytest.fixture(scope="session", name="client")
def fixture_client(model_tag: str, mode: str) -> Iterator[TestClient]:
    """The service's app as BentoML serves it, started: entering the client runs the lifespan, which
    calls `Classifier.__init__` (model load, warm-up, metrics); leaving it runs the shutdown.

    A worker process builds one app and never unloads it; this process builds one per setting, one
    after the other, so each is undone after use: its Prometheus collectors (a second app would
    register the same names again), its garbage-collection meter, the heap freeze and thresholds.
    """
    import prometheus_client

    # prometheus_client has no public list of what is registered; _collector_to_names is its index.
    registered = set(prometheus_client.REGISTRY._collector_to_names)
    thresholds = gc.get_threshold()
    service = load_service(mode)
    try:
        with TestClient(service.Classifier.to_asgi()) as client:
            yield client
    finally:
        for collector in set(prometheus_client.REGISTRY._collector_to_names) - registered:
            prometheus_client.REGISTRY.unregister(collector)
        if instance := service.SERVING.get("instance"):
            instance.pauses.remove()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.modules.pop(service.__name__, None)
