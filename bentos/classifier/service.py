"""The trained classifier as a BentoML service: POST /predict, plus /livez, /readyz and /metrics.

The model is pinned by tag (MODEL_TAG, `name:version` where version is the model's content hash),
never `:latest`; `nox -s build` sets it when it builds the Bento and bakes it into the image.
"""

from __future__ import annotations

import logging
import os

import bentoml
import numpy as np

from bentos.classifier.io_schemas import ErrorResponse, Prediction, make_request_model, make_rows_type
from bentos.classifier.json_logging import use_json_logs
from bentos.classifier.model_files import load_manifest, load_settings
from bentos.classifier.request_guard import RequestGuard

SETTINGS = load_settings()
MODEL_TAG = os.environ.get("MODEL_TAG", "")
if not MODEL_TAG or ":" not in MODEL_TAG or MODEL_TAG.endswith((":latest", ":")):
    raise RuntimeError(
        f"MODEL_TAG must name a pinned model as name:version, got {MODEL_TAG!r}: "
        "build the Bento with `nox -s build`, which sets it from models/manifest.json."
    )
MODEL = bentoml.models.BentoModel(MODEL_TAG)
MANIFEST = load_manifest(MODEL.stored.path if MODEL.stored else None)
PredictRequest = make_request_model(MANIFEST["n_features"], SETTINGS["max_rows_per_request"])
Rows = make_rows_type(MANIFEST["n_features"], SETTINGS["max_rows_per_request"])
logger = logging.getLogger("bentoml.classifier")


def log_accelerator() -> None:
    """Say which TensorFlow build runs and whether it found a GPU: the first thing to check on a GPU host."""
    import tensorflow as tf

    cuda_build = bool(tf.sysconfig.get_build_info().get("is_cuda_build"))
    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    variant = os.environ.get("IMAGE_VARIANT", "unknown")
    if gpus:
        logger.info("GPU found: serving on %s", ", ".join(gpus), extra={"variant": variant, "gpus": gpus})
    elif cuda_build:
        logger.warning(
            "no GPU found: serving on the CPU (run with `docker run --gpus all` on a host with the NVIDIA "
            "container toolkit to use one)",
            extra={"variant": variant, "cuda_build": True},
        )
    else:
        logger.info("CPU build of TensorFlow: serving on the CPU", extra={"variant": variant, "cuda_build": False})


@bentoml.service(
    name=SETTINGS["service"],
    # One worker and one TF thread pool: the container is the unit of scaling.
    workers=1,
    traffic={"timeout": SETTINGS["timeout_s"]},
    resources={"cpu": "1"},
    labels={"model": MODEL_TAG},
)
class Classifier:
    """Serves the Keras classifier with adaptive batching."""

    model_ref = MODEL

    def __init__(self) -> None:
        use_json_logs()
        import keras  # imported here: the import takes ~2 s and is only needed in the worker

        self.version = MANIFEST["version"]
        self.class_names = list(MANIFEST["class_names"])
        self.model = keras.saving.load_model(self.model_ref.path_of("model.keras"), compile=False)
        # No XLA: a 30-input MLP gains nothing from it, and without it the CUDA image needs no
        # compiler (XLA runs ptxas at run time; requirements-cuda.in leaves nvcc out).
        self.model.jit_compile = False
        log_accelerator()
        # Warm up so the first requests do not pay for graph tracing (one trace per shape family).
        for rows in (1, 2, SETTINGS["max_batch_size"]):
            self.model.predict_on_batch(np.zeros((rows, MANIFEST["n_features"]), dtype=np.float32))
        self.ready = True
        logger.info("model loaded", extra={"model": MODEL_TAG, "features": MANIFEST["n_features"]})

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    @bentoml.api(
        route="/predict",
        batchable=True,
        max_batch_size=SETTINGS["max_batch_size"],
        max_latency_ms=SETTINGS["max_latency_ms"],
    )
    def predict(self, rows: Rows) -> list[Prediction]:  # type: ignore[valid-type]
        """Classify a batch of feature rows (raw values, training column order)."""
        # predict_on_batch, not predict: predict builds a tf.data pipeline per call (~60 ms here),
        # predict_on_batch runs the compiled function directly (<1 ms for a batch of this MLP).
        probabilities = self.model.predict_on_batch(np.asarray(rows, dtype=np.float32))
        return [self._prediction(p) for p in probabilities]

    def _prediction(self, probs: np.ndarray) -> Prediction:
        by_class = {name: round(float(p), 6) for name, p in zip(self.class_names, probs, strict=False)}
        return Prediction(
            label=self.class_names[int(np.argmax(probs))],
            probabilities=by_class,
            model_version=self.version,
        )


Classifier.add_asgi_middleware(
    RequestGuard,
    paths=("/predict",),
    request_model=PredictRequest,
    max_body_bytes=SETTINGS["max_body_bytes"],
)
use_json_logs()

__all__ = ["Classifier", "ErrorResponse"]
