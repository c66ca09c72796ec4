"""Stage `export`: a faithful, byte-stable ONNX model, and a gate that fails an unfaithful one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts, export


@pytest.mark.slow
def test_onnx_answers_like_keras_on_the_test_split(exported_root: Path):
    """ONNX Runtime's probabilities are within the gate's limit of Keras's on every test row."""
    features, _, _ = artifacts.read_split(exported_root / artifacts.TEST_CSV)
    model = export.load_classifier(exported_root / artifacts.MODEL_FILE)
    keras_proba = export.classifier_probabilities(model, features)
    onnx_proba = export.onnx_probabilities((exported_root / artifacts.ONNX_FILE).read_bytes(), features)
    assert np.max(np.abs(keras_proba - onnx_proba)) <= export.MAX_ABS_DIFF


@pytest.mark.slow
def test_export_is_byte_stable_and_names_its_ends(exported_root: Path):
    """Exporting again gives the same bytes; the graph takes float32 `features` [batch, 30], no other input."""
    import onnx

    first = (exported_root / artifacts.ONNX_FILE).read_bytes()
    model = export.load_classifier(exported_root / artifacts.MODEL_FILE)
    assert export.onnx_bytes(model, 30) == first
    proto = onnx.load_from_string(first)
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    assert (graph_input.name, graph_output.name) == (export.INPUT_NAME, export.OUTPUT_NAME)
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert not dims[0].dim_value  # the batch dimension is free
    assert dims[1].dim_value == 30
    assert proto.producer_version == ""


def test_gate_passes_within_the_limit():
    """Differences at or under the limit, with the same labels, pass and are reported."""
    keras_proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    parity = export.check_parity(keras_proba, keras_proba + 1e-6)
    assert parity.rows == 2
    assert parity.same_labels


@pytest.mark.parametrize(
    "onnx_proba",
    [
        np.array([[0.9, 0.1], [0.2, 0.80002]]),  # past the limit
        np.array([[0.9, 0.1], [np.nan, 0.8]]),  # not finite
        np.array([[0.9, 0.1]]),  # a row missing
    ],
    ids=["too-far", "nan", "shape"],
)
def test_gate_fails_an_unfaithful_export(onnx_proba):
    """A difference past the limit, a NaN or a wrong shape fails the stage with a ParityError."""
    with pytest.raises(export.ParityError):
        export.check_parity(np.array([[0.9, 0.1], [0.2, 0.8]]), onnx_proba)


def test_gate_fails_when_a_label_flips_within_the_limit():
    """Rows at 0.5 that tip the other way are a failure even when the difference is tiny."""
    keras_proba = np.array([[0.5000001, 0.4999999]])
    onnx_proba = np.array([[0.4999999, 0.5000001]])
    with pytest.raises(export.ParityError, match="labels differ"):
        export.check_parity(keras_proba, onnx_proba)
