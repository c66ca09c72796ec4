"""Where the service finds its settings and its model's manifest, and what it does when they are missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# params.yaml sits at the root of both the repository and the Bento's src/ (the build includes it).
PARAMS_FILE = Path(__file__).resolve().parents[2] / "params.yaml"
MANIFEST_KEYS = ("name", "version", "sha256", "class_names", "feature_names", "n_features", "input_name", "output_name")
SETTING_KEYS = (
    "service",
    "max_rows_per_request",
    "max_body_bytes",
    "adaptive_batching",
    "max_batch_size",
    "max_latency_ms",
    "max_concurrency",
    "timeout_s",
    "port",
    "access_log",
    "tracing",
    "direct_predict",
    "runtime",
)


def load_settings(params_file: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read the `serve` section of params.yaml, failing with one sentence if it is incomplete."""
    if not params_file.is_file():
        raise RuntimeError(f"{params_file} not found: the Bento must include params.yaml.")
    serve = (yaml.safe_load(params_file.read_text()) or {}).get("serve") or {}
    missing = [k for k in SETTING_KEYS if k not in serve]
    if missing:
        raise RuntimeError(f"params.yaml `serve` lacks {', '.join(missing)}: add them (see docs/configuration.md).")
    if serve["adaptive_batching"] and serve["direct_predict"]:
        raise RuntimeError(
            "params.yaml turns on both `serve.adaptive_batching` and `serve.direct_predict`: the direct path "
            "answers without BentoML's batcher; turn one of them off (see docs/service.md)."
        )
    if serve["adaptive_batching"] and serve["max_rows_per_request"] > serve["max_batch_size"]:
        raise RuntimeError(
            "params.yaml `serve.max_rows_per_request` exceeds `serve.max_batch_size`: BentoML would answer 503 "
            "to the largest requests; raise max_batch_size or lower max_rows_per_request."
        )
    return serve


def load_manifest(model_dir: str | Path | None) -> dict[str, Any]:
    """Read manifest.json from a BentoML model directory and check it has what the service needs."""
    if model_dir is None:
        raise RuntimeError("The model named by MODEL_TAG is not in the model store: run `nox -s build` to import it.")
    path = Path(model_dir) / "manifest.json"
    if not path.is_file():
        raise RuntimeError(f"{path} not found: the model was not imported by ci/image/bento.py.")
    manifest = json.loads(path.read_text())
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}: re-run `dvc repro`.")
    return manifest
