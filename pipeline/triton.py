"""Stage `triton`: a Triton Inference Server model repository for the exported ONNX model.

Writes `models/triton/<model.name>/config.pbtxt` and `models/triton/<model.name>/<version>/model.onnx`
(a copy of `models/model.onnx`), the layout Triton's `--model-repository` reads, served by its ONNX
Runtime backend (`platform: "onnxruntime_onnx"`). Nothing is written unless the config passes two
offline checks:

- the schema: the text is parsed with `google.protobuf.text_format` into Triton's own `ModelConfig`
  message, from the `model_config_pb2` module the `tritonclient` package ships (loaded from its file,
  so neither grpcio nor `tritonclient.grpc`'s other modules are needed); an unknown field, a wrong
  type or an unknown enum value fails the stage;
- the graph: the config's inputs and outputs must be the ONNX graph's, by name, datatype and dims,
  with the graph's free first dimension as Triton's batch dimension.

The names, datatypes and dims come from the graph; the batching and instance settings from
params.yaml (`triton`, and `serve.max_rows_per_request` and `serve.runtime.intra_op_threads`, which
Triton shares with the BentoML service). The choices are explained there and in docs/triton.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline import artifacts
from pipeline.package import model_version
from pipeline.params import ParamsError, load_params, section

# Not in pipeline/artifacts.py on purpose: every stage lists that file as a dependency, so an edit
# there would re-run (and retrain) the whole pipeline. dvc.yaml names the same path as the output.
REPOSITORY_DIR = Path("models/triton")
CONFIG_NAME = "config.pbtxt"
PLATFORM = "onnxruntime_onnx"  # Triton's ONNX Runtime backend
TRITON_KEYS = ("version", "max_queue_delay_us", "instance_count", "instance_kind")
# ONNX TensorProto element types -> Triton's DataType names (model_config.proto).
ONNX_TO_TRITON = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FLOAT16": "TYPE_FP16",
    "FLOAT": "TYPE_FP32",
    "DOUBLE": "TYPE_FP64",
    "STRING": "TYPE_STRING",
    "BFLOAT16": "TYPE_BF16",
}


class ConfigError(ValueError):
    """The Triton config does not follow Triton's schema, or does not match the ONNX graph."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the ONNX graph declares it: dims include the batch dimension (-1 when free)."""

    name: str
    data_type: str  # Triton's name, e.g. TYPE_FP32
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Settings:
    """What params.yaml decides about the Triton model (the graph decides the rest)."""

    name: str  # model.name: Triton's model name, the directory under models/triton/
    version: int  # triton.version: the version directory
    max_batch_size: int  # serve.max_rows_per_request
    max_queue_delay_us: int  # triton.max_queue_delay_us
    instance_count: int  # triton.instance_count
    instance_kind: str  # triton.instance_kind: KIND_CPU, KIND_GPU, ...
    intra_op_threads: int  # serve.runtime.intra_op_threads: ONNX Runtime threads per instance


def settings(params: dict[str, Any]) -> Settings:
    """The stage's settings from the whole params.yaml; ParamsError names a missing key or a bad version."""
    triton = section(params, "triton", TRITON_KEYS)
    serve = section(params, "serve", ("max_rows_per_request", "runtime"))
    runtime = serve["runtime"] if isinstance(serve["runtime"], dict) else {}
    if "intra_op_threads" not in runtime:
        raise ParamsError("params.yaml lacks `serve.runtime.intra_op_threads`: add it (see README).")
    version = triton["version"]
    # Triton loads only version directories named by a positive integer (and skips others silently).
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ParamsError(f"params.yaml `triton.version` is {version!r}: Triton needs a positive integer, e.g. 1.")
    return Settings(
        name=str(section(params, "model", ("name",))["name"]),
        version=version,
        max_batch_size=serve["max_rows_per_request"],
        max_queue_delay_us=triton["max_queue_delay_us"],
        instance_count=triton["instance_count"],
        instance_kind=triton["instance_kind"],
        intra_op_threads=runtime["intra_op_threads"],
    )


def graph_signature(model_bytes: bytes) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The ONNX graph's (inputs, outputs): names, Triton datatypes and dims (-1 for a free dimension).

    Initializers listed among the inputs (old exporters did that) are weights, not inputs.
    """
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    weights = {initializer.name for initializer in graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        onnx_type = onnx.TensorProto.DataType.Name(tensor.elem_type)
        if onnx_type not in ONNX_TO_TRITON:
            raise ConfigError(f"the ONNX graph's `{value.name}` is {onnx_type}, which Triton has no datatype for.")
        dims = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim)
        return TensorSpec(value.name, ONNX_TO_TRITON[onnx_type], dims)

    inputs = tuple(spec(value) for value in graph.input if value.name not in weights)
    return inputs, tuple(spec(value) for value in graph.output)


def _quoted(text: str) -> str:
    """A protobuf text-format string literal (JSON's escapes are a subset of what it reads)."""
    return json.dumps(text)


def _tensors(field: str, specs: tuple[TensorSpec, ...], batched: bool) -> list[str]:
    """`input [...]` or `output [...]`: with batching on, Triton's dims leave out the batch dimension."""
    lines = [f"{field} ["]
    for i, spec in enumerate(specs):
        dims = spec.dims[1:] if batched else spec.dims
        lines += [
            "  {",
            f"    name: {_quoted(spec.name)}",
            f"    data_type: {spec.data_type}",
            f"    dims: [ {', '.join(map(str, dims))} ]",
            "  }" + ("," if i < len(specs) - 1 else ""),
        ]
    return [*lines, "]"]


def render_config(
    settings: Settings, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], model_bytes: bytes
) -> str:
    """config.pbtxt for the model: Triton's ModelConfig in protobuf text format, with a comment per choice.

    Values are written as params.yaml gives them, unchecked: parsing the text against Triton's
    schema (`parse_config`) is the type check.
    """
    version, digest = model_version(model_bytes)
    batched = settings.max_batch_size != 0
    lines = [
        "# Generated by `dvc repro` (stage `triton`, pipeline/triton.py) from models/model.onnx and params.yaml;",
        "# do not edit. Every choice is explained in params.yaml `triton` and docs/triton.md.",
        f"name: {_quoted(settings.name)}",
        f"platform: {_quoted(PLATFORM)}",
        "# Version directories are positive integers: one model per commit, one version. Its identity is",
        "# the sha256 in `parameters` below.",
        "version_policy: {",
        f"  specific: {{ versions: [ {settings.version} ] }}",
        "}",
        "# = serve.max_rows_per_request: the largest request both servers accept, and the largest batch the",
        "# dynamic batcher forms.",
        f"max_batch_size: {settings.max_batch_size}",
        *_tensors("input", inputs, batched),
        *_tensors("output", outputs, batched),
        "# Merges the requests waiting when the instance becomes free; waits no longer than the delay.",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {settings.max_queue_delay_us}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {settings.instance_count}",
        f"    kind: {settings.instance_kind}",
        "  }",
        "]",
        "parameters [",
        f'  {{ key: "model_sha256" value: {{ string_value: "{digest}" }} }},',
        f'  {{ key: "model_version" value: {{ string_value: "{version}" }} }},',
        "  # ONNX Runtime threads per instance (serve.runtime.intra_op_threads), read by the onnxruntime backend.",
        f'  {{ key: "intra_op_thread_count" value: {{ string_value: "{settings.intra_op_threads}" }} }}',
        "]",
    ]
    return "\n".join(lines) + "\n"


def model_config_module() -> ModuleType:
    """Triton's `model_config_pb2` (the ModelConfig protobuf), as shipped by the tritonclient package.

    It lives in `tritonclient/grpc/`, whose `__init__` imports grpcio; the module itself needs only
    protobuf, so it is loaded from its file under its own name (a later `import tritonclient.grpc`
    then reuses it instead of registering the schema twice).
    """
    name = "tritonclient.grpc.model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("tritonclient")
    if package is None or not package.submodule_search_locations:
        raise ConfigError("the tritonclient package is not installed: install requirements.lock (`nox -s unit`).")
    path = Path(next(iter(package.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall tritonclient (requirements.lock).")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def parse_config(text: str) -> Any:
    """Parse config.pbtxt text into Triton's ModelConfig; ConfigError on anything its schema refuses."""
    from google.protobuf import text_format

    config = model_config_module().ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(
            f"{CONFIG_NAME} does not follow Triton's ModelConfig schema ({exc}): fix params.yaml `triton` "
            "or the template in pipeline/triton.py."
        ) from None
    return config


def check_config(config: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], name: str) -> None:
    """Check a parsed ModelConfig against the ONNX graph and Triton's rules; ConfigError lists every problem."""
    data_type = model_config_module().DataType.Name
    problems = []
    if config.name != name:
        problems.append(f"name is {config.name!r}, not the model's {name!r}")
    if config.platform != PLATFORM:
        problems.append(f"platform is {config.platform!r}, not {PLATFORM!r}")
    if config.max_batch_size < 1:
        problems.append(f"max_batch_size is {config.max_batch_size}: dynamic batching needs at least 1")
    if not config.HasField("dynamic_batching"):
        problems.append("dynamic_batching is missing")
    if not config.instance_group or any(group.count < 1 for group in config.instance_group):
        problems.append("instance_group needs a count of at least 1")
    for field, declared, graph in (("input", config.input, inputs), ("output", config.output, outputs)):
        by_name = {tensor.name: tensor for tensor in declared}
        if set(by_name) != {spec.name for spec in graph}:
            problems.append(f"{field} names {sorted(by_name)} are not the graph's {sorted(s.name for s in graph)}")
            continue
        for spec in graph:
            tensor = by_name[spec.name]
            if data_type(tensor.data_type) != spec.data_type:
                problems.append(f"{field} {spec.name} is {data_type(tensor.data_type)}, the graph's {spec.data_type}")
            dims = spec.dims
            if config.max_batch_size >= 1:
                if not dims or dims[0] != -1:
                    problems.append(f"{field} {spec.name} has no free first dimension to batch on (graph {dims})")
                dims = dims[1:]
            if tuple(tensor.dims) != dims:
                problems.append(f"{field} {spec.name} has dims {list(tensor.dims)}, the graph {list(dims)}")
    if problems:
        raise ConfigError(f"{CONFIG_NAME} does not match the ONNX model: {'; '.join(problems)}.")


def write_repository(settings: Settings, root: Path = Path(".")) -> Path:
    """Run the stage under `root`: check, then write models/triton/ whole; return the model's directory.

    The repository is built beside the old one and swapped in, so a failed check or a crash leaves
    no half-written repository behind (and nothing at all on a first run).
    """
    model_bytes = (root / artifacts.ONNX_FILE).read_bytes()
    inputs, outputs = graph_signature(model_bytes)
    text = render_config(settings, inputs, outputs, model_bytes)
    check_config(parse_config(text), inputs, outputs, settings.name)
    target = root / REPOSITORY_DIR
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    artifacts.write_text(staging / settings.name / CONFIG_NAME, text)
    artifacts.write_bytes(staging / settings.name / str(settings.version) / artifacts.ONNX_FILE.name, model_bytes)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target / settings.name


def main() -> None:
    """Entry point of `dvc repro`: read params.yaml, write the repository; any problem is one line and exit 1."""
    try:
        chosen = settings(load_params())
        model_dir = write_repository(chosen)
    except (ParamsError, ConfigError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(
        f"triton: {chosen.name} version {chosen.version}, {PLATFORM}, max_batch_size {chosen.max_batch_size}, "
        f"checked against Triton's ModelConfig schema and the ONNX graph -> {model_dir}"
    )


if __name__ == "__main__":
    main()
