"""Stage `export`: the trained Keras classifier as an ONNX model, gated on parity with Keras.

TensorFlow stays the training framework; the ONNX file is what serving will run (ONNX Runtime costs
microseconds per row where Keras costs about a millisecond, and needs no TensorFlow in the image).

How: the Keras model is traced into a concrete TensorFlow function, its variables frozen into
constants (`convert_variables_to_constants_v2`), and the graph converted by tf2onnx. Keras' own
`model.export(format="onnx")` is not used: it leaves the Normalization layer's mean and variance as
extra graph inputs. The gate: on the whole test split, ONNX Runtime's probabilities may differ from
Keras's by at most `MAX_ABS_DIFF`, or the stage fails and writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

import numpy as np

from pipeline import artifacts
from pipeline.evaluate import classifier_probabilities, load_classifier

if TYPE_CHECKING:
    import keras
    import onnx

OPSET = 17  # ONNX Runtime 1.31 runs opsets up to 23; 17 is what tf2onnx 1.17 converts this graph to, checked
MAX_ABS_DIFF = 1e-5  # largest allowed |p_onnx - p_keras| over every test row and class
INPUT_NAME = artifacts.ONNX_INPUT
OUTPUT_NAME = artifacts.ONNX_OUTPUT


class ParityError(RuntimeError):
    """The exported model does not answer like the Keras model."""


@dataclass(frozen=True)
class Parity:
    """How closely ONNX Runtime reproduces Keras on the test split."""

    rows: int
    max_abs_diff: float
    same_labels: bool


def onnx_bytes(model: keras.Model, n_features: int) -> bytes:
    """The serialized ONNX model of `model`: input `features`, output `probabilities`, both float32."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([None, n_features], tf.float32, name=INPUT_NAME)
    concrete = tf.function(lambda x: {OUTPUT_NAME: model(x, training=False)}).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    # tf2onnx first runs TensorFlow's Grappler over the graph, whose constant folding computes
    # 1/sqrt(variance) with Eigen's fast reciprocal (an approximate `rcp` instruction refined once):
    # its last bits differ between CPUs (measured: 5 of 30 values, AVX-512 host vs an emulated
    # Haswell), and so would the ONNX file. Without Grappler, tf2onnx's own optimizer folds what it
    # can with numpy, whose sqrt and division are exact IEEE operations on every CPU.
    with mock.patch.object(tf2onnx.tf_loader, "tf_optimize", lambda inputs, outputs, graph: graph):
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def,
            input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs],
            opset=OPSET,
        )
    rename_stably(proto.graph)
    # tf2onnx names free dimensions from a counter global to the process (`unk__6`, then `unk__11`
    # on a second export): every free dimension here is the batch, so name it so.
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = "batch"
    # No tool version in the file: the bytes depend on the model, not on which tf2onnx wrote them.
    proto.producer_version = ""
    return proto.SerializeToString(deterministic=True)


def rename_stably(graph: onnx.GraphProto) -> None:
    """Give the graph's ends friendly names and drop tf2onnx's process-wide counters from the rest.

    tf2onnx keeps TensorFlow's `x:0` and `Identity:0` for the ends, and suffixes the names it makes
    (`Maximum__6`) from a counter that runs on through a process, so a second export in one process
    would give other bytes. The suffix goes, the order of the nodes decides any tie.
    """
    renamed = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    taken = set(renamed.values())

    def stable(name: str) -> str:
        if name not in renamed:
            base = candidate = re.sub(r"__\d+$", "", name)
            n = 1
            while candidate in taken:
                candidate, n = f"{base}_{n}", n + 1
            renamed[name] = candidate
            taken.add(candidate)
        return renamed[name]

    for initializer in graph.initializer:
        initializer.name = stable(initializer.name)
    for node in graph.node:
        node.input[:] = [stable(name) for name in node.input]
        node.output[:] = [stable(name) for name in node.output]
        node.name = re.sub(r"__\d+$", "", node.name)
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = stable(value.name)


def onnx_probabilities(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Class probabilities from ONNX Runtime on the CPU, one thread, as float64 rows renormalized like Keras's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the gate's numbers must not depend on the machine's core count
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    (proba,) = session.run([OUTPUT_NAME], {INPUT_NAME: features.astype(np.float32)})
    proba = np.asarray(proba, dtype=np.float64)
    return proba / proba.sum(axis=1, keepdims=True)


def check_parity(keras_proba: np.ndarray, onnx_proba: np.ndarray, limit: float = MAX_ABS_DIFF) -> Parity:
    """Compare the two models' probabilities; raise ParityError past `limit` or on any other label."""
    if keras_proba.shape != onnx_proba.shape:
        raise ParityError(f"ONNX answers shape {onnx_proba.shape}, Keras {keras_proba.shape}")
    diff = float(np.max(np.abs(keras_proba - onnx_proba))) if keras_proba.size else 0.0
    same_labels = bool(np.array_equal(keras_proba.argmax(axis=1), onnx_proba.argmax(axis=1)))
    parity = Parity(rows=len(keras_proba), max_abs_diff=diff, same_labels=same_labels)
    if not np.isfinite(diff) or diff > limit or not same_labels:
        raise ParityError(
            f"the ONNX model differs from Keras by up to {diff:.3g} on {parity.rows} test rows "
            f"(limit {limit:g}; labels {'equal' if same_labels else 'differ'}): the export is not faithful"
        )
    return parity


def export(root: Path = Path(".")) -> Parity:
    """Run the stage under `root`: export, gate on the test split, then write models/model.onnx."""
    features, _, _ = artifacts.read_split(root / artifacts.TEST_CSV)
    model = load_classifier(root / artifacts.MODEL_FILE)
    data = onnx_bytes(model, features.shape[1])
    parity = check_parity(classifier_probabilities(model, features), onnx_probabilities(data, features))
    artifacts.write_bytes(root / artifacts.ONNX_FILE, data)
    print(
        f"export: ONNX (opset {OPSET}) within {parity.max_abs_diff:.1e} of Keras on {parity.rows} test rows "
        f"(limit {MAX_ABS_DIFF:g}), same labels -> {artifacts.ONNX_FILE}"
    )
    return parity


def main() -> None:
    """Entry point of `dvc repro`: run the stage; a failed gate is one line and exit code 1."""
    try:
        export()
    except ParityError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
