"""Fixtures for the Triton tier: a real Triton serving the stage's repository, its clients, the reference answers.

The server is the one TRITON_SERVER names (ci/triton/server.py): `wheel`, the tritonserver binary of the
nvidia-pytriton wheel (here), or `image`, the official image pinned by digest (GitHub Actions). The
client libraries are imported inside the fixtures: `nox -s unit` collects this directory in the main
environment, which has tritonclient's HTTP client only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest

from ci.project import GOLDEN, MANIFEST, SERVED_MODEL, UserError
from ci.triton import repository
from ci.triton import server as triton_server
from pipeline import triton

TOLERANCE = 1e-5  # largest allowed |Triton - ONNX Runtime| per probability


@pytest.fixture(scope="session", name="server")
def fixture_server() -> Iterator[triton_server.Server]:
    """A ready Triton for the whole session on 127.0.0.1 and free ports, stopped (every process) at the end."""
    kind = os.environ.get(triton_server.ENV_VAR, "wheel")
    with ExitStack() as stack:
        try:
            server = stack.enter_context(triton_server.serve(kind))
        except UserError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server


@pytest.fixture(scope="session", name="config")
def fixture_config() -> Any:
    """The stage's config.pbtxt, parsed with Triton's ModelConfig protobuf."""
    return triton.parse_config((repository.model_dir() / triton.CONFIG_NAME).read_text())


@pytest.fixture(scope="session", name="golden")
def fixture_golden() -> tuple[np.ndarray, list[str]]:
    """The golden rows (float32 [n, 30]) and their expected labels, from reports/golden.json."""
    cases = json.loads(GOLDEN.read_text())["cases"]
    return np.asarray([c["features"] for c in cases], dtype=np.float32), [c["expected_label"] for c in cases]


@pytest.fixture(scope="session", name="class_names")
def fixture_class_names() -> list[str]:
    """The classes in the order of the model's output columns (models/manifest.json)."""
    return json.loads(MANIFEST.read_text())["class_names"]


@pytest.fixture(scope="session", name="reference")
def fixture_reference(config):
    """What the BentoML service computes: ONNX Runtime on the CPU on models/model.onnx, float32 rows in."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(SERVED_MODEL), providers=["CPUExecutionProvider"])
    (output,) = config.output
    (input_,) = config.input
    return lambda rows: session.run([output.name], {input_.name: rows})[0]


@pytest.fixture(scope="session", name="clients")
def fixture_clients(server) -> Iterator[dict[str, tuple[Any, Any]]]:
    """protocol -> (tritonclient module, client connected to the server), for HTTP and gRPC."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    clients = {
        "http": (httpclient, httpclient.InferenceServerClient(server.http_url)),
        "grpc": (grpcclient, grpcclient.InferenceServerClient(server.grpc_url)),
    }
    yield clients
    for _, client in clients.values():
        client.close()


@pytest.fixture(name="protocol", params=["http", "grpc"])
def fixture_protocol(request) -> str:
    """Each test that takes it runs over both protocols."""
    return request.param


@pytest.fixture(scope="session", name="infer")
def fixture_infer(server, clients):
    """infer(protocol, rows, model=None, datatype="FP32") -> the answer's probabilities, one request."""

    def infer(protocol: str, rows: np.ndarray, model: str | None = None, datatype: str = "FP32", **kwargs: Any):
        module, client = clients[protocol]
        tensor = module.InferInput("features", list(rows.shape), datatype)
        tensor.set_data_from_numpy(rows)
        return client.infer(model or server.model_name, [tensor], **kwargs).as_numpy("probabilities")

    return infer
