"""The trained classifier as a BentoML service on ONNX Runtime: POST /predict, the Open Inference
Protocol under /v2 (bentos/classifier/oip.py), plus /livez, /readyz and /metrics.

The model is pinned by tag (MODEL_TAG, `name:version` where version is the content hash of
model.onnx), never `:latest`; `nox -s build` sets it when it builds the Bento and bakes it into the
image. Every serving setting is in params.yaml `serve`, with the reason for its value.
"""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from typing import Annotated

import bentoml
import numpy as np
import pydantic
from bentoml.validators import ContentType

from bentos.classifier.io_schemas import ErrorResponse, Prediction, error_body, make_request_model, make_rows_type
from bentos.classifier.json_logging import use_json_logs
from bentos.classifier.model_files import load_manifest, load_settings
from bentos.classifier.oip import ModelSpec, OpenInferenceProtocol
from bentos.classifier.request_guard import RequestGuard
from bentos.classifier.runtime import PauseMeter, RuntimeSettings, load_model, settle_heap
from bentos.classifier.traffic import install as install_prompt_timeout

SETTINGS = load_settings()
install_prompt_timeout()  # before BentoML builds the app: see bentos/classifier/traffic.py
RUNTIME = RuntimeSettings.from_params(SETTINGS["runtime"])
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
# Stating the media type spares BentoML deriving it from the JSON schema of the response type, which
# it otherwise does for every response (a profile showed ~30% of the worker's CPU per request there).
Predictions = Annotated[list[Prediction], ContentType("application/json")]
PREDICTIONS_JSON = pydantic.TypeAdapter(list[Prediction])
SERVING: dict[str, Classifier] = {}  # the loaded instance, set at the end of its __init__: what `answer` calls
logger = logging.getLogger("bentoml.classifier")


class OutputNotFinite(bentoml.exceptions.BentoMLException):
    """Inputs inside float32's range whose probabilities still overflow: 422, never a NaN in a body."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def pause_metrics():
    """The worker's garbage-collection pauses as Prometheus metrics (created in the worker, after
    BentoML has set up its multiprocess metrics directory)."""
    import prometheus_client

    histogram = prometheus_client.Histogram(
        "classifier_gc_pause_seconds",
        "Garbage-collection pauses of the serving worker, one observation per collection, by generation.",
        labelnames=("generation",),
        buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    )
    longest = prometheus_client.Gauge(
        "classifier_gc_pause_max_seconds",
        "The longest garbage-collection pause of the serving worker since it started.",
        multiprocess_mode="max",
    )
    return histogram, longest


@bentoml.service(
    name=SETTINGS["service"],
    # One worker: the container is the unit of scaling, and one process keeps one model in memory.
    workers=1,
    # max_concurrency: requests in flight beyond it get 429 at once instead of queueing past the timeout.
    traffic={"timeout": SETTINGS["timeout_s"], "max_concurrency": SETTINGS["max_concurrency"]},
    logging={"access": {"enabled": SETTINGS["access_log"]}},
    # No tracing unless asked for: OpenTelemetry's middleware otherwise builds a span per request
    # (~14% of the worker's CPU) that nothing exports. serve.tracing: true, plus an exporter in
    # BentoML's configuration, brings it back.
    tracing={} if SETTINGS["tracing"] else {"excluded_urls": [".*"]},
    resources={"cpu": "1"},
    labels={"model": MODEL_TAG},
)
class Classifier:
    """Serves the ONNX classifier."""

    model_ref = MODEL

    def __init__(self) -> None:
        use_json_logs()
        self.version = MANIFEST["version"]
        self.class_names = list(MANIFEST["class_names"])
        self.model = load_model(self.model_ref.path_of(MANIFEST.get("model_file", "model.onnx")), RUNTIME)
        variant = os.environ.get("IMAGE_VARIANT", "unknown")
        if self.model.warning:
            logger.warning(self.model.warning, extra={"variant": variant, "providers": self.model.providers})
        logger.info(
            "serving on %s",
            self.model.providers[0],
            extra={"variant": variant, "providers": self.model.providers, "threads": RUNTIME.intra_op_threads},
        )
        # Warm up: the first run of each batch shape allocates the arena and plans memory.
        for rows in (1, 2, SETTINGS["max_rows_per_request"]):
            self.model.predict(np.zeros((rows, MANIFEST["n_features"]), dtype=np.float32))
        histogram, longest = pause_metrics()
        by_generation = [histogram.labels(generation=str(g)) for g in range(3)]

        def on_pause(generation: int, seconds: float) -> None:
            by_generation[generation].observe(seconds)
            if seconds >= self.pauses.longest:
                longest.set(seconds)

        self.pauses = PauseMeter(on_pause=on_pause)
        self.served = 0
        settle_heap(RUNTIME)
        self.pauses.install()
        self.ready = True
        SERVING["instance"] = self
        logger.info("model loaded", extra={"model": MODEL_TAG, "features": MANIFEST["n_features"]})

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    @bentoml.api(
        route="/predict",
        batchable=SETTINGS["adaptive_batching"],
        max_batch_size=SETTINGS["max_batch_size"],
        max_latency_ms=SETTINGS["max_latency_ms"],
    )
    async def predict(self, rows: Rows) -> Predictions:  # type: ignore[valid-type]
        """Classify a batch of feature rows (raw values, training column order)."""
        # async: runs on the event loop, no hand-off to a thread pool. One run costs microseconds.
        return self.classify(rows)

    def classify(self, rows: list[list[float]]) -> list[Prediction]:
        """What `predict` answers; `answer` calls it directly (an API method called on the instance
        goes through BentoML's client proxy, over HTTP)."""
        probabilities = self.probabilities(np.asarray(rows, dtype=np.float32))
        finite = np.isfinite(probabilities).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite).tolist()
            raise OutputNotFinite(
                f"rows {bad[:10]}: the model's probabilities overflow for these values; "
                "send raw features of the magnitude the model was trained on."
            )
        return [self._prediction(p) for p in probabilities.tolist()]

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The model's class probabilities for float32 rows (what /predict and /v2 infer answer from)."""
        probabilities = self.model.predict(rows)
        self.served += 1
        if self.served == RUNTIME.gc_settle_after:
            # BentoML builds much of its request machinery on the first requests; settle again
            # once, so that what it keeps for good is frozen too (one collection, on one request,
            # timed like any other).
            settle_heap(RUNTIME)
        return probabilities

    def _prediction(self, probs: list[float]) -> Prediction:
        by_class = {name: round(p, 6) for name, p in zip(self.class_names, probs, strict=True)}
        return Prediction(
            label=self.class_names[max(range(len(probs)), key=probs.__getitem__)],
            probabilities=by_class,
            model_version=self.version,
        )


async def answer(request) -> tuple[int, bytes] | None:
    """Answer a request the guard has validated by calling `predict` directly (see RequestGuard);
    None before the model is loaded, so that BentoML's dispatch answers (503 until ready)."""
    service = SERVING.get("instance")
    if service is None:
        return None
    try:
        predictions = service.classify(request.rows)
    except OutputNotFinite as exc:
        return 422, error_body("invalid_input", str(exc))
    return 200, PREDICTIONS_JSON.dump_json(predictions)


async def infer(rows: np.ndarray) -> np.ndarray | None:
    """The probabilities for the rows of a validated /v2 infer request (serve.direct_predict); None
    before the model is loaded. The protocol's middleware refuses a non-finite output."""
    service = SERVING.get("instance")
    return None if service is None else service.probabilities(rows)


# The Open Inference Protocol (KServe V2) for the same model: its tensors are the ONNX graph's (the
# manifest names them: `features` in, `probabilities` out) plus the label; its version is the content hash.
Classifier.add_asgi_middleware(
    OpenInferenceProtocol,
    spec=ModelSpec(
        name=MANIFEST["name"],
        version=MANIFEST["version"],
        platform="onnxruntime_onnx",
        input_name=MANIFEST["input_name"],
        probabilities=MANIFEST["output_name"],
        n_features=MANIFEST["n_features"],
        class_names=tuple(MANIFEST["class_names"]),
        max_rows=SETTINGS["max_rows_per_request"],
    ),
    server_name=SETTINGS["service"],
    server_version=bentoml.__version__,
    max_body_bytes=SETTINGS["max_body_bytes"],
    ready=lambda: "instance" in SERVING,
    infer=infer if SETTINGS["direct_predict"] else None,
)
Classifier.add_asgi_middleware(
    RequestGuard,
    paths=("/predict",),
    request_model=PredictRequest,
    max_body_bytes=SETTINGS["max_body_bytes"],
    answer=answer if SETTINGS["direct_predict"] else None,
)
use_json_logs()

__all__ = ["Classifier", "ErrorResponse"]
