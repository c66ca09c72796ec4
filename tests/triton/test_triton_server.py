"""The stage's model repository on a real Triton, through tritonclient over HTTP and gRPC.

Run by `nox -s triton` against the tritonserver of the nvidia-pytriton wheel (Python backend, here), and
by the `triton_image` job against the official image (its ONNX Runtime backend); see docs/triton.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from ci import processes
from ci.project import SERVED_MODEL, UserError
from ci.triton import repository
from ci.triton import server as triton_server

pytestmark = pytest.mark.triton

TOLERANCE = 1e-5  # largest allowed |Triton - ONNX Runtime| per probability


def test_server_is_live_and_ready_and_so_is_the_model(server, clients, protocol, config):
    """Health: the server is live and ready, the model and its one version are ready, another version is not."""
    _, client = clients[protocol]
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(server.model_name)
    (version,) = config.version_policy.specific.versions
    assert client.is_model_ready(server.model_name, str(version))
    assert not client.is_model_ready(server.model_name, str(version + 1))


def test_server_metadata_names_triton_and_the_extensions_used(server, clients):
    """Server metadata: Triton, with the model configuration and statistics extensions these tests rely on."""
    for protocol in ("http", "grpc"):
        _, client = clients[protocol]
        metadata = client.get_server_metadata(**({"as_json": True} if protocol == "grpc" else {}))
        assert metadata["name"] == "triton"
        assert metadata["version"]
        assert {"model_configuration", "statistics"} <= set(metadata["extensions"])


def test_model_metadata_is_the_config_and_the_graph(server, clients, protocol, config):
    """Model metadata: name, version, platform, and inputs and outputs as config.pbtxt declares them."""
    _, client = clients[protocol]
    metadata = client.get_model_metadata(server.model_name, **({"as_json": True} if protocol == "grpc" else {}))
    assert metadata["name"] == config.name
    assert metadata["versions"] == [str(v) for v in config.version_policy.specific.versions]
    assert metadata["platform"] == server.platform
    # Shapes as each protocol sends them: JSON numbers over HTTP, int64 as strings in gRPC's JSON form.
    for served, declared in ((metadata["inputs"], config.input), (metadata["outputs"], config.output)):
        expected = [(t.name, "FP32", [-1, *t.dims]) for t in declared]
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in served] == expected


def test_the_served_config_carries_the_choices_and_the_models_hash(server, clients, config):
    """The model configuration Triton loaded: the stage's batching, instances and the sha256 of model.onnx."""
    _, client = clients["http"]
    served = client.get_model_config(server.model_name)
    assert served["max_batch_size"] == config.max_batch_size
    delay = served["dynamic_batching"].get("max_queue_delay_microseconds", 0)
    assert int(delay) == config.dynamic_batching.max_queue_delay_microseconds
    assert [(g["count"], g["kind"]) for g in served["instance_group"]] == [
        (g.count, type(config.instance_group[0]).Kind.Name(g.kind)) for g in config.instance_group
    ]
    digest = hashlib.sha256(SERVED_MODEL.read_bytes()).hexdigest()
    assert served["parameters"]["model_sha256"]["string_value"] == digest


def test_golden_rows_answer_as_onnx_runtime_does(infer, protocol, golden, reference, class_names):
    """The golden rows in one request: within 1e-5 of ONNX Runtime's on model.onnx, and the expected labels."""
    rows, labels = golden
    answer = infer(protocol, rows)
    assert answer.dtype == np.float32
    assert answer.shape == (len(rows), len(class_names))
    assert float(np.max(np.abs(answer - reference(rows)))) <= TOLERANCE
    assert [class_names[i] for i in answer.argmax(axis=1)] == labels


def test_one_row_at_a_time_answers_the_same(infer, protocol, golden, reference):
    """Each golden row alone gives the same probabilities as in a batch (no leak between rows of a batch)."""
    rows, _ = golden
    answers = np.concatenate([infer(protocol, rows[i : i + 1]) for i in range(len(rows))])
    assert float(np.max(np.abs(answers - reference(rows)))) <= TOLERANCE


def test_the_largest_request_is_max_batch_size_rows(infer, protocol, golden, reference, config):
    """A request of max_batch_size rows (= serve.max_rows_per_request) is answered; one more row is refused."""
    rows = np.resize(golden[0], (config.max_batch_size, golden[0].shape[1]))
    assert float(np.max(np.abs(infer(protocol, rows) - reference(rows)))) <= TOLERANCE
    with pytest.raises(InferenceServerException, match="batch"):
        infer(protocol, np.resize(rows, (config.max_batch_size + 1, rows.shape[1])))


def statistics(clients, model: str) -> tuple[int, int, dict[int, int]]:
    """(inference_count, execution_count, {batch size: executions}) from Triton's statistics extension."""
    _, client = clients["http"]
    stats = client.get_inference_statistics(model)["model_stats"][0]
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    return int(stats["inference_count"]), int(stats["execution_count"]), batches


def test_dynamic_batching_merges_concurrent_requests(server, clients, golden, reference):
    """16 clients in flight, one row each per request, over gRPC: Triton runs some requests as one batch.

    With no queue delay (params.yaml triton.max_queue_delay_us) the batcher merges the requests that
    queued while the instance was busy: the statistics extension shows batches of more than one row,
    fewer executions than inferences, and every answer is still its own row's.
    """
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as aio

    rows = golden[0]
    expected = reference(rows)
    concurrency, per_client = 16, 25

    async def client_loop(client, offset: int) -> float:
        worst = 0.0
        for i in range(per_client):
            index = (offset + i) % len(rows)
            tensor = grpcclient.InferInput("features", [1, rows.shape[1]], "FP32")
            tensor.set_data_from_numpy(rows[index : index + 1])
            answer = (await client.infer(server.model_name, [tensor])).as_numpy("probabilities")
            worst = max(worst, float(np.max(np.abs(answer - expected[index : index + 1]))))
        return worst

    async def send() -> float:
        client = aio.InferenceServerClient(server.grpc_url)
        try:
            return max(await asyncio.gather(*(client_loop(client, 7 * c) for c in range(concurrency))))
        finally:
            await client.close()

    inferences, executions, batches = statistics(clients, server.model_name)
    worst = asyncio.run(send())
    after_inferences, after_executions, after_batches = statistics(clients, server.model_name)
    sent = concurrency * per_client
    assert after_inferences - inferences == sent
    assert after_executions - executions < sent, "no two requests were run as one batch"
    merged = {size: n - batches.get(size, 0) for size, n in after_batches.items() if size > 1}
    assert any(n > 0 for n in merged.values()), after_batches
    assert worst <= TOLERANCE


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong-datatype", "FP64"),
        ("wrong-shape", "30"),
        ("too-many-rows", "batch"),
        ("unknown-model", "no_such_model"),
        ("unknown-version", "version"),
    ],
)
def test_a_bad_request_is_an_inference_server_exception(server, infer, protocol, golden, config, case, message):
    """Wrong datatype, shape, too many rows, unknown model or version: a client error; the server stays ready."""
    rows = golden[0][:2]
    calls = {
        "wrong-datatype": lambda: infer(protocol, rows.astype(np.float64), datatype="FP64"),
        "wrong-shape": lambda: infer(protocol, np.ascontiguousarray(rows[:, :29])),
        "too-many-rows": lambda: infer(protocol, np.resize(rows, (config.max_batch_size + 1, rows.shape[1]))),
        "unknown-model": lambda: infer(protocol, rows, model="no_such_model"),
        "unknown-version": lambda: infer(protocol, rows, model_version="99"),
    }
    with pytest.raises(InferenceServerException, match=message) as raised:
        calls[case]()
    status = str(raised.value.status())
    if protocol == "http":
        assert status.startswith("4"), status  # a client error, never a 5xx
    else:
        assert status in {"StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE"}, status
    assert is_ready(server)


def is_ready(server) -> bool:
    """The server still answers ready."""
    return triton_server.is_ready(server.http_port)


def test_a_second_server_starts_on_other_ports_and_stops_without_a_trace(server):
    """serve() picks free ports (a second server beside the session's), and stopping it ends every process of it."""
    with triton_server.serve(server.kind) as other:
        assert {other.http_port, other.grpc_port}.isdisjoint({server.http_port, server.grpc_port})
        assert triton_server.is_ready(other.http_port)
        group = other.process.pid
        members = processes.group_members(group)
        assert members, "the server runs in its own process group"
    assert processes.group_members(group) == []
    for port in (other.http_port, other.grpc_port):
        with socket.socket() as sock:
            assert sock.connect_ex((triton_server.HOST, port)) != 0, f"port {port} still answers"


def test_a_server_that_cannot_load_its_model_fails_in_one_sentence(server, tmp_path, monkeypatch):
    """A model that fails to load ends start-up with one UserError naming the exit and the log's last lines."""
    if server.kind != "wheel":
        pytest.skip("breaks the Python-backend model; the image serves the stage's repository as it is")
    broken = tmp_path / "model.py"
    broken.write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('broken on purpose')\n"
    )
    monkeypatch.setattr(repository, "MODEL_PY", broken)
    with pytest.raises(UserError) as raised, triton_server.serve("wheel"):
        pass
    message = str(raised.value)
    assert "\n" not in message
    assert "before it was ready" in message
    assert "broken on purpose" in message
