"""The service's runtime: provider choice, settings checks, the real ONNX model, and pause measurement."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest

from bentos.classifier import runtime
from bentos.classifier.model_files import PARAMS_FILE, load_settings

ROOT = Path(__file__).resolve().parents[2]
ONNX = ROOT / "models" / "model.onnx"
GOLDEN = ROOT / "reports" / "golden.json"


@pytest.fixture(name="settings")
def fixture_settings() -> runtime.RuntimeSettings:
    return runtime.RuntimeSettings.from_params(load_settings(PARAMS_FILE)["runtime"])


def test_cuda_only_with_a_driver():
    """CUDA first when the build has it and a driver loads; the CPU with a warning when the driver is
    missing; the CPU and no warning on a CPU-only build."""
    both = [runtime.CUDA, runtime.CPU]
    assert runtime.choose_providers(both, driver_present=True) == ([runtime.CUDA, runtime.CPU], None)
    providers, warning = runtime.choose_providers(both, driver_present=False)
    assert providers == [runtime.CPU]
    assert "no GPU found" in warning
    assert "--gpus all" in warning
    assert runtime.choose_providers([runtime.CPU], driver_present=True) == ([runtime.CPU], None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"intra_op_threads": -1}, "0 \\(all CPUs\\) or more"),
        ({"intra_op_threads": True}, "must be a int"),
        ({"graph_optimization": "max"}, "must be one of disable, basic, extended, all"),
        ({"gc_thresholds": [1, 2]}, "three positive integers"),
        ({"gc_thresholds": [0, 10, 10]}, "three positive integers"),
        ({"memory_arena": "yes"}, "must be a bool"),
    ],
)
def test_bad_runtime_settings_are_named(change, message):
    """Each bad value of `serve.runtime` fails with one sentence naming the key."""
    good = load_settings(PARAMS_FILE)["runtime"]
    with pytest.raises(RuntimeError, match=message):
        runtime.RuntimeSettings.from_params({**good, **change})
    missing = {k: v for k, v in good.items() if k != "gc_freeze"}
    with pytest.raises(RuntimeError, match="lacks gc_freeze"):
        runtime.RuntimeSettings.from_params(missing)


@pytest.mark.skipif(not ONNX.is_file() or not GOLDEN.is_file(), reason="needs `dvc repro` outputs")
def test_the_served_model_answers_the_golden_rows(settings):
    """The ONNX model, opened as the service opens it, gives the pipeline's golden probabilities."""
    model = runtime.load_model(str(ONNX), settings)
    assert model.providers == [runtime.CPU]
    golden = json.loads(GOLDEN.read_text())
    rows = np.asarray([case["features"] for case in golden["cases"]], dtype=np.float32)
    got = model.predict(rows)
    want = np.asarray([[case["probabilities"][name] for name in golden["class_names"]] for case in golden["cases"]])
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-5


def test_pause_meter_times_real_collections():
    """Every collection calls back with its generation and a duration; the longest is kept."""
    seen: list[tuple[int, float]] = []
    meter = runtime.PauseMeter(on_pause=lambda gen, seconds: seen.append((gen, seconds)))
    meter.install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        meter.remove()
    assert meter not in gc.callbacks
    assert [gen for gen, _ in seen][-2:] == [0, 2]
    assert meter.count >= 2
    assert meter.longest == max(seconds for _, seconds in seen) > 0


def test_settle_heap_freezes_and_sets_thresholds(settings):
    """After settle_heap the objects alive are frozen and the thresholds are the configured ones."""
    before = gc.get_threshold()
    try:
        runtime.settle_heap(settings)
        assert gc.get_threshold() == settings.gc_thresholds
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
