"""The service fails at start with one clear sentence when its settings or model are incomplete."""

from __future__ import annotations

import json

import pytest
import yaml

from bentos.classifier.model_files import MANIFEST_KEYS, PARAMS_FILE, load_manifest, load_settings


def test_repository_params_have_every_setting():
    """params.yaml `serve` holds everything the service reads."""
    settings = load_settings(PARAMS_FILE)
    assert settings["max_batch_size"] > 0
    assert settings["max_latency_ms"] > 0


def test_missing_settings_are_named(tmp_path):
    """An incomplete `serve` section names the missing keys."""
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n  service: x\n")
    with pytest.raises(RuntimeError, match="lacks max_rows_per_request"):
        load_settings(params)


def test_a_request_must_fit_in_one_batch(tmp_path):
    """With adaptive batching on, max_rows_per_request above max_batch_size is refused at start
    (BentoML would 503 such requests); with it off, batches do not exist and the sizes may differ."""
    settings = dict(
        load_settings(PARAMS_FILE),
        max_rows_per_request=65,
        max_batch_size=64,
        adaptive_batching=True,
        direct_predict=False,
    )
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"serve": settings}))
    with pytest.raises(RuntimeError, match=r"exceeds `serve\.max_batch_size`"):
        load_settings(params)
    params.write_text(yaml.safe_dump({"serve": dict(settings, adaptive_batching=False)}))
    assert load_settings(params)["max_rows_per_request"] == 65


def test_batching_and_the_direct_path_exclude_each_other(tmp_path):
    """The direct path answers without BentoML's batcher: both on is a configuration error at start."""
    settings = dict(load_settings(PARAMS_FILE), adaptive_batching=True, direct_predict=True)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"serve": settings}))
    with pytest.raises(RuntimeError, match=r"both `serve\.adaptive_batching` and `serve\.direct_predict`"):
        load_settings(params)


def test_manifest_must_exist_and_be_complete(tmp_path):
    """No model dir, no manifest, or a manifest missing keys: each is a clear error."""
    with pytest.raises(RuntimeError, match="not in the model store"):
        load_manifest(None)
    with pytest.raises(RuntimeError, match=r"manifest\.json not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "m"}))
    with pytest.raises(RuntimeError, match="lacks version"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(dict.fromkeys(MANIFEST_KEYS, 1)))
    assert load_manifest(tmp_path)["name"] == 1
