"""The bench's baseline: the same model.onnx behind a bare Starlette app on uvicorn, nothing else.

`python -m ci.bench.run` runs it inside a container of the image under test (same Python, same ONNX
Runtime, same CPUs), mounted read-only at /bench/baseline.py, beside the BentoML service, and
reports the service's throughput and latency as ratios of this one's. It answers what the service
answers, in the same JSON shape:

- POST /predict {"rows": [[30 floats], ...]} -> [{"label", "probabilities": {class: p}, "model_version"}]
- GET /readyz, GET /livez -> 200 once the model is loaded (before uvicorn listens)
- GET /gcmax -> {"longest_s", "collections"}: the garbage-collection pauses of this worker, timed by
  the same kind of gc.callbacks hook as the service's classifier_gc_pause_* metrics

No validation beyond the shape, no metrics, no access log, no batching, one worker, and the
collector left as CPython sets it: the floor of what serving this model over HTTP costs here.
Imports only what the image has for the service: the standard library, numpy, onnxruntime,
starlette and uvicorn.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MODELS_DIR = "/home/bentoml/bento/models"  # where the image holds the Bento's model store


def find_model(models_dir: Path, tag: str = "") -> tuple[Path, dict]:
    """The model file and manifest.json of `tag` (name:version), or of the only model there."""
    if tag and ":" in tag:
        name, version = tag.split(":", 1)
        manifests = [models_dir / name / version / "manifest.json"]
    else:
        manifests = sorted(models_dir.glob("*/*/manifest.json"))
    manifests = [path for path in manifests if path.is_file()]
    if len(manifests) != 1:
        raise SystemExit(f"expected one model under {models_dir} (MODEL_TAG={tag!r}), found {len(manifests)}")
    manifest = json.loads(manifests[0].read_text())
    return manifests[0].parent / manifest.get("model_file", "model.onnx"), manifest


def session_options() -> ort.SessionOptions:
    """The service's settings (params.yaml serve.runtime): one thread, sequential, all graph optimizations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class PauseMeter:
    """Times every garbage collection (all generations) through gc.callbacks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.collections += 1
        self.longest = max(self.longest, time.perf_counter() - self._started)


def create_app(model_file: Path, manifest: dict) -> Starlette:
    """The Starlette app serving `model_file`, warmed up, with its pause meter installed."""
    session = ort.InferenceSession(str(model_file), sess_options=session_options(), providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    n_features, classes, version = manifest["n_features"], list(manifest["class_names"]), manifest["version"]
    for rows in (1, 2, 64):  # as the service warms up: the first run of a shape plans its memory
        session.run([output_name], {input_name: np.zeros((rows, n_features), dtype=np.float32)})
    pauses = PauseMeter()
    gc.callbacks.append(pauses)

    async def predict(request: Request) -> JSONResponse:
        try:
            rows = np.asarray(json.loads(await request.body())["rows"], dtype=np.float32)
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=422)
        if rows.ndim != 2 or rows.shape[1] != n_features or not len(rows):
            return JSONResponse({"error": f"rows must be a non-empty list of {n_features} numbers each"}, 422)
        probabilities = session.run([output_name], {input_name: rows})[0].tolist()
        return JSONResponse(
            [
                {
                    "label": classes[max(range(len(probs)), key=probs.__getitem__)],
                    "probabilities": {name: round(p, 6) for name, p in zip(classes, probs, strict=True)},
                    "model_version": version,
                }
                for probs in probabilities
            ]
        )

    async def ready(_request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def gcmax(_request: Request) -> JSONResponse:
        return JSONResponse({"longest_s": pauses.longest, "collections": pauses.collections})

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/readyz", ready),
            Route("/livez", ready),
            Route("/gcmax", gcmax),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(MODELS_DIR), help="a BentoML model store directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    model_file, manifest = find_model(args.models, os.environ.get("MODEL_TAG", ""))
    app = create_app(model_file, manifest)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
