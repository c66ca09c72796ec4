"""The Python-backend model that serves models/model.onnx with ONNX Runtime inside Triton.

ci/triton/repository.py copies this file to `<model>/<version>/model.py` of the Python-backend
repository, beside a copy of model.onnx; Triton's Python backend runs it in its stub process, in the
environment the config's EXECUTION_ENV_PATH names (the `nox -s triton` virtual environment, which
has numpy and onnxruntime). It is the `onnxruntime_onnx` backend's job done in Python: the same
file, the same input and output names, ONNX Runtime's CPU provider with the config's
`intra_op_thread_count`. Imports `triton_python_backend_utils`, which exists only inside the stub.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

MODEL_FILE = "model.onnx"


class TritonPythonModel:
    """Triton's Python-backend model interface: initialize once, execute per batch of requests."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load model.onnx from this version's directory with the config's thread count."""
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / MODEL_FILE
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list) -> list:
        """One ONNX Runtime run for every request the dynamic batcher handed over, split back per request.

        Triton's Python backend passes the batched requests as a list (it does not concatenate them
        as its C++ backends do): concatenating here is what makes dynamic batching one model call.
        """
        arrays = {
            name: [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for request in requests]
            for name in self.inputs
        }
        sizes = [len(array) for array in arrays[self.inputs[0]]]
        results = self.session.run(self.outputs, {name: np.concatenate(parts) for name, parts in arrays.items()})
        bounds = np.cumsum([0, *sizes])
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, result[start:end]) for name, result in zip(self.outputs, results, strict=True)]
            )
            for start, end in itertools.pairwise(bounds)
        ]
