"""Stage `triton`: a model repository Triton accepts, checked offline against its schema and the ONNX graph."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts, triton
from pipeline.params import ParamsError, load_params

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = triton.Settings(
    name="classifier",
    version=1,
    max_batch_size=64,
    max_queue_delay_us=0,
    instance_count=1,
    instance_kind="KIND_CPU",
    intra_op_threads=1,
)


def onnx_model(n_features: int = 30, n_classes: int = 2, batch: str | int = "batch", dtype: str = "FLOAT") -> bytes:
    """A small graph shaped like the exported model: `features` [batch, n] -> softmax -> `probabilities`."""
    import onnx
    from onnx import helper, numpy_helper

    elem = getattr(onnx.TensorProto, dtype)
    weights = numpy_helper.from_array(np.linspace(-1, 1, n_features * n_classes, dtype=np.float32).reshape(-1, 2), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"]),
        ],
        "g",
        [helper.make_tensor_value_info("features", elem, [batch, n_features])],
        [helper.make_tensor_value_info("probabilities", elem, [batch, n_classes])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(name="root")
def fixture_root(tmp_path: Path) -> Path:
    """A project root holding only models/model.onnx, as the export stage leaves it."""
    artifacts.write_bytes(tmp_path / artifacts.ONNX_FILE, onnx_model())
    return tmp_path


def test_graph_signature_reads_names_datatypes_and_free_dims():
    """Inputs and outputs come from the graph: names, Triton datatypes, -1 for the free batch dimension."""
    inputs, outputs = triton.graph_signature(onnx_model())
    assert inputs == (triton.TensorSpec("features", "TYPE_FP32", (-1, 30)),)
    assert outputs == (triton.TensorSpec("probabilities", "TYPE_FP32", (-1, 2)),)


def test_the_written_config_parses_as_tritons_model_config(root: Path):
    """config.pbtxt is valid ModelConfig text with the chosen platform, batching, instances and the model's hash."""
    model_dir = triton.write_repository(SETTINGS, root)
    config = triton.parse_config((model_dir / triton.CONFIG_NAME).read_text())
    digest = hashlib.sha256((root / artifacts.ONNX_FILE).read_bytes()).hexdigest()
    assert (config.name, config.platform, config.max_batch_size) == ("classifier", "onnxruntime_onnx", 64)
    assert [(t.name, list(t.dims)) for t in config.input] == [("features", [30])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("probabilities", [2])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (1, triton.model_config_module().ModelInstanceGroup.KIND_CPU)
    ]
    assert list(config.version_policy.specific.versions) == [1]
    assert config.parameters["model_sha256"].string_value == digest
    assert config.parameters["model_version"].string_value == digest[:16]
    assert config.parameters["intra_op_thread_count"].string_value == "1"


def test_the_repository_has_triton_layout_and_the_exported_bytes(root: Path):
    """models/triton/<name>/config.pbtxt and <version>/model.onnx, the very bytes of models/model.onnx."""
    triton.write_repository(replace(SETTINGS, version=3), root)
    files = sorted(p.relative_to(root).as_posix() for p in (root / triton.REPOSITORY_DIR).rglob("*") if p.is_file())
    assert files == ["models/triton/classifier/3/model.onnx", "models/triton/classifier/config.pbtxt"]
    assert (root / "models/triton/classifier/3/model.onnx").read_bytes() == (root / artifacts.ONNX_FILE).read_bytes()


def test_writing_twice_gives_the_same_bytes_and_replaces_the_old_repository(root: Path):
    """Deterministic output (DVC hashes it), and a renamed model leaves no stale directory behind."""
    triton.write_repository(replace(SETTINGS, name="old"), root)
    model_dir = triton.write_repository(SETTINGS, root)
    first = (model_dir / triton.CONFIG_NAME).read_bytes()
    triton.write_repository(SETTINGS, root)
    assert (model_dir / triton.CONFIG_NAME).read_bytes() == first
    assert sorted(p.name for p in (root / triton.REPOSITORY_DIR).iterdir()) == ["classifier"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instance_kind": "KIND_XPU"}, "ModelConfig schema"),  # an enum value Triton does not have
        ({"max_batch_size": "sixty-four"}, "ModelConfig schema"),  # a string for an int32
        ({"max_queue_delay_us": 0.5}, "ModelConfig schema"),  # a float for a uint64
        ({"max_batch_size": 0}, "max_batch_size is 0"),
        ({"instance_count": 0}, "instance_group needs a count"),
    ],
    ids=["unknown-enum", "string-for-int", "float-for-int", "no-batching", "no-instance"],
)
def test_a_bad_setting_fails_with_one_sentence_and_writes_nothing(root: Path, change, message):
    """What Triton's schema or its rules refuse fails the stage before anything is written."""
    with pytest.raises(triton.ConfigError, match=message) as raised:
        triton.write_repository(replace(SETTINGS, **change), root)
    assert "\n" not in str(raised.value)
    assert not (root / triton.REPOSITORY_DIR).exists()


def test_an_unknown_field_is_refused_by_the_schema():
    """A field ModelConfig does not define (a typo) is a ConfigError, not silently dropped."""
    text = triton.render_config(SETTINGS, *triton.graph_signature(onnx_model()), onnx_model())
    with pytest.raises(triton.ConfigError, match=r"ModelConfig schema.*max_batch_sise"):
        triton.parse_config(text.replace("max_batch_size:", "max_batch_sise:"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("dims: [ 30 ]", "dims: [ 31 ]"), "input features has dims [31], the graph [30]"),
        (("data_type: TYPE_FP32", "data_type: TYPE_FP64"), "input features is TYPE_FP64, the graph's TYPE_FP32"),
        (('name: "probabilities"', 'name: "proba"'), "output names ['proba'] are not the graph's"),
        (('platform: "onnxruntime_onnx"', 'platform: "tensorflow_savedmodel"'), "platform is 'tensorflow_savedmodel'"),
    ],
    ids=["dims", "datatype", "name", "platform"],
)
def test_a_config_that_disagrees_with_the_graph_is_refused(edit, message):
    """Names, datatypes and dims of the config are checked against the ONNX graph, and the platform too."""
    inputs, outputs = triton.graph_signature(onnx_model())
    text = triton.render_config(SETTINGS, inputs, outputs, onnx_model()).replace(*edit, 1)
    with pytest.raises(triton.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        triton.check_config(triton.parse_config(text), inputs, outputs, SETTINGS.name)


def test_a_graph_without_a_free_batch_dimension_cannot_batch(tmp_path: Path):
    """A graph fixed at batch 1 cannot take Triton's batches: the stage says so."""
    artifacts.write_bytes(tmp_path / artifacts.ONNX_FILE, onnx_model(batch=1))
    with pytest.raises(triton.ConfigError, match="no free first dimension"):
        triton.write_repository(SETTINGS, tmp_path)


def test_the_graphs_datatype_reaches_the_config(tmp_path: Path):
    """A float64 graph gives TYPE_FP64 tensors: datatypes are read from the graph, not assumed."""
    artifacts.write_bytes(tmp_path / artifacts.ONNX_FILE, onnx_model(dtype="DOUBLE"))
    config = triton.parse_config((triton.write_repository(SETTINGS, tmp_path) / triton.CONFIG_NAME).read_text())
    assert {triton.model_config_module().DataType.Name(t.data_type) for t in (*config.input, *config.output)} == {
        "TYPE_FP64"
    }


def test_settings_come_from_params_yaml_and_share_servings_limits():
    """max_batch_size is serve.max_rows_per_request and the threads serve.runtime's: one source for both servers."""
    params = load_params(REPO_ROOT / "params.yaml")
    chosen = triton.settings(params)
    assert chosen.max_batch_size == params["serve"]["max_rows_per_request"]
    assert chosen.intra_op_threads == params["serve"]["runtime"]["intra_op_threads"]
    assert chosen.name == params["model"]["name"]
    assert chosen.version >= 1


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True])
def test_a_version_that_is_not_a_positive_integer_is_refused(version):
    """Triton loads only positive integer version directories; anything else is a ParamsError at the start."""
    params = load_params(REPO_ROOT / "params.yaml")
    params["triton"] = {**params["triton"], "version": version}
    with pytest.raises(ParamsError, match="positive integer"):
        triton.settings(params)


def test_dvc_yaml_lists_every_key_the_stage_reads():
    """The stage re-runs when any setting it reads changes: dvc.yaml names each key, and the output directory."""
    import yaml

    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["triton"]
    read = {"model.name", "serve.max_rows_per_request", "serve.runtime.intra_op_threads"}
    read |= {f"triton.{key}" for key in triton.TRITON_KEYS}
    assert set(stage["params"]) == read
    assert stage["outs"] == [triton.REPOSITORY_DIR.as_posix()]
    assert {"pipeline/triton.py", artifacts.ONNX_FILE.as_posix()} <= set(stage["deps"])


def test_main_exits_with_one_sentence_on_a_bad_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`python -m pipeline.triton` with a setting Triton refuses ends with `error: ...`, no traceback."""
    import yaml

    params = load_params(REPO_ROOT / "params.yaml")
    params["triton"]["instance_kind"] = "KIND_XPU"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    artifacts.write_bytes(tmp_path / artifacts.ONNX_FILE, onnx_model())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: config\.pbtxt does not follow Triton's ModelConfig schema"):
        triton.main()
