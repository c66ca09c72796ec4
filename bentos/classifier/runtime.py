"""The model's runtime: an ONNX Runtime session chosen on purpose, and a worker that does not pause.

Kept free of BentoML so the unit tests can run it as it runs in the image. The settings come from
params.yaml `serve.runtime` (see the comments there for why each value).

- Execution provider: the CUDA image has onnxruntime-gpu. Its CUDA provider is used only when a GPU
  driver is present (libcuda.so.1 loads, which the NVIDIA container toolkit mounts with `--gpus`);
  otherwise the session runs on the CPU and the service logs a warning that says how to get the GPU.
  ONNX Runtime would also fall back on its own, but only after logging an error per session.
- Threads: one intra-op thread. A batch of this MLP costs microseconds; a thread pool's hand-off
  costs more than it saves, and idle pool threads spin on the CPUs the event loop needs.
- Garbage collection: after warm-up, `gc.freeze()` moves every object that exists (modules, the
  session, BentoML's app) to a generation the collector never scans, and the thresholds make the
  youngest generation larger. A full collection then walks only what requests created since, so it
  takes microseconds instead of the ~100 ms a heap of this size took. Every pause is measured.
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ONNX Runtime 1.31's Linux builds send usage events to Microsoft and keep a device id under
# ~/.cache unless this is set before it loads (the image sets it too; this covers `bentoml serve`
# outside the image).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class RuntimeSettings:
    """params.yaml `serve.runtime`, checked."""

    intra_op_threads: int
    graph_optimization: str
    memory_arena: bool
    gc_freeze: bool
    gc_thresholds: tuple[int, int, int]
    gc_settle_after: int

    @classmethod
    def from_params(cls, runtime: dict[str, Any]) -> RuntimeSettings:
        """Build from the `serve.runtime` mapping; one sentence on the first bad value."""
        expected = {
            "intra_op_threads": int,
            "graph_optimization": str,
            "memory_arena": bool,
            "gc_freeze": bool,
            "gc_thresholds": list,
            "gc_settle_after": int,
        }
        for key, kind in expected.items():
            if key not in runtime:
                raise RuntimeError(f"params.yaml `serve.runtime` lacks {key}: add it (see docs/service.md).")
            value = runtime[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise RuntimeError(f"params.yaml `serve.runtime.{key}` must be a {kind.__name__}, got {value!r}.")
        if runtime["gc_settle_after"] < 0:
            raise RuntimeError("params.yaml `serve.runtime.gc_settle_after` must be 0 (never) or more requests.")
        if runtime["intra_op_threads"] < 0:
            raise RuntimeError("params.yaml `serve.runtime.intra_op_threads` must be 0 (all CPUs) or more.")
        if runtime["graph_optimization"] not in GRAPH_LEVELS:
            raise RuntimeError(
                f"params.yaml `serve.runtime.graph_optimization` must be one of {', '.join(GRAPH_LEVELS)}, "
                f"got {runtime['graph_optimization']!r}."
            )
        thresholds = runtime["gc_thresholds"]
        positive = [isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in thresholds]
        if len(thresholds) != 3 or not all(positive):
            raise RuntimeError(
                f"params.yaml `serve.runtime.gc_thresholds` must be three positive integers, got {thresholds!r}."
            )
        return cls(
            intra_op_threads=runtime["intra_op_threads"],
            graph_optimization=runtime["graph_optimization"],
            memory_arena=runtime["memory_arena"],
            gc_freeze=runtime["gc_freeze"],
            gc_thresholds=(thresholds[0], thresholds[1], thresholds[2]),
            gc_settle_after=runtime["gc_settle_after"],
        )


def gpu_driver_present() -> bool:
    """True when the NVIDIA driver's user-space library loads (it comes from the host, not the image)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def choose_providers(available: list[str], driver_present: bool) -> tuple[list[str], str | None]:
    """The providers to ask for, and a warning to log (or None).

    CUDA first when this ONNX Runtime build has it and a driver is there; CPU otherwise.
    """
    if CUDA in available and driver_present:
        return [CUDA, CPU], None
    if CUDA in available:
        return [CPU], (
            "no GPU found: serving on the CPU. Run the image with `docker run --gpus all` on a host with the "
            "NVIDIA driver (CUDA 13, driver >= 580) and the NVIDIA container toolkit to serve on the GPU."
        )
    return [CPU], None


def session_options(settings: RuntimeSettings):
    """ONNX Runtime session options from the settings (see the module docstring for why)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.graph_optimization]
    # The arena keeps freed buffers for the next run: no malloc/free per request.
    options.enable_cpu_mem_arena = settings.memory_arena
    # Spinning threads busy-wait for work between runs; with one thread there is nothing to wake.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: a warning per node placement is noise in the logs
    return options


@dataclass
class Model:
    """An ONNX model ready to serve: `predict(rows)` returns float32 probabilities, one row per input row."""

    session: Any
    input_name: str
    output_name: str
    providers: list[str]
    warning: str | None = None

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: rows})[0]


def load_model(path: str, settings: RuntimeSettings) -> Model:
    """Open the ONNX file with the chosen providers; the CUDA libraries come from the nvidia wheels."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers, warning = choose_providers(available, CUDA in available and gpu_driver_present())
    if CUDA in providers:
        # The CUDA and cuDNN libraries live in the nvidia-* wheels under site-packages, not on the
        # loader's path: load them first so the CUDA provider's dependencies resolve.
        ort.preload_dlls()
    session = ort.InferenceSession(path, sess_options=session_options(settings), providers=providers)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise RuntimeError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; the service expects one each.")
    running = session.get_providers()
    if CUDA in providers and running[0] != CUDA:
        warning = f"the CUDA provider did not start (running on {running[0]}): see the error ONNX Runtime logged above."
    return Model(session, inputs[0].name, outputs[0].name, running, warning)


@dataclass
class PauseMeter:
    """Times every garbage collection through `gc.callbacks`: the worker's pauses, measured.

    `on_pause(generation, seconds)` is called after each collection (cheap: the service keeps the
    longest and a histogram). `longest` is the longest pause seen.
    """

    on_pause: Callable[[int, float], None] | None = None
    longest: float = 0.0
    count: int = 0
    _started: float = field(default=0.0, repr=False)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        self.count += 1
        if seconds > self.longest:
            self.longest = seconds
        if self.on_pause is not None:
            self.on_pause(info["generation"], seconds)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def settle_heap(settings: RuntimeSettings) -> None:
    """After warm-up: collect once, freeze what is left, set the thresholds (see the module docstring)."""
    gc.collect()
    if settings.gc_freeze:
        gc.freeze()
    gc.set_threshold(*settings.gc_thresholds)
