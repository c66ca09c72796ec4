"""The request model accepts exactly well-formed batches, and errors come in one shape."""

from __future__ import annotations

import json
import math

import numpy as np
import pydantic
import pytest

from bentos.classifier.io_schemas import (
    FLOAT32_MAX,
    ErrorResponse,
    error_body,
    make_request_model,
    summarize,
    validation_details,
)

N_FEATURES = 4
MAX_ROWS = 3


@pytest.fixture(name="model")
def fixture_model():
    return make_request_model(N_FEATURES, MAX_ROWS)


def test_valid_batch_is_accepted(model):
    """Integers and floats are numbers; up to MAX_ROWS rows of N_FEATURES each pass."""
    request = model.model_validate({"rows": [[1, 2.5, -3, 0.0]] * MAX_ROWS})
    assert len(request.rows) == MAX_ROWS


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"rows": []}, ["rows"]),
        ({"rows": [[1.0] * N_FEATURES] * (MAX_ROWS + 1)}, ["rows"]),
        ({"rows": [[1.0] * (N_FEATURES - 1)]}, ["rows", 0]),
        ({"rows": [[1.0] * (N_FEATURES + 1)]}, ["rows", 0]),
        ({"rows": [["1.0", 1.0, 1.0, 1.0]]}, ["rows", 0, 0]),
        ({"rows": [[True, 1.0, 1.0, 1.0]]}, ["rows", 0, 0]),
        ({"rows": [[None, 1.0, 1.0, 1.0]]}, ["rows", 0, 0]),
        ({"rows": [[1.0, math.nan, 1.0, 1.0]]}, ["rows", 0, 1]),
        ({"rows": [[1.0, 1.0, math.inf, 1.0]]}, ["rows", 0, 2]),
        ({"rows": [[1.0, 1.0, 1.0, 1e39]]}, ["rows", 0, 3]),
        ({"rows": [[-1e39, 1.0, 1.0, 1.0]]}, ["rows", 0, 0]),
        ({}, ["rows"]),
        ({"rows": [[1.0] * N_FEATURES], "extra": 1}, ["extra"]),
        ({"rows": "nope"}, ["rows"]),
    ],
    ids=[
        "empty",
        "too-many-rows",
        "too-few-features",
        "too-many-features",
        "string",
        "bool",
        "null",
        "nan",
        "inf",
        "beyond-float32",
        "beyond-float32-negative",
        "missing-rows",
        "unknown-field",
        "not-a-list",
    ],
)
def test_invalid_batches_are_rejected_with_location(model, payload, where):
    """Each kind of bad input fails validation and the error points at the offending place."""
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate(payload)
    details = validation_details(info.value)
    assert details[0]["loc"] == where
    assert summarize(details).startswith(".".join(map(str, where)))


def test_float32_max_is_numpys():
    """The bound is exactly the largest finite float32, so every accepted value stays finite in the model."""
    assert float(np.finfo(np.float32).max) == FLOAT32_MAX
    assert np.isfinite(np.float32(FLOAT32_MAX))


def test_float32_range_is_inclusive_and_named(model):
    """The extremes pass; one step beyond fails with a message stating the range, not a 39-digit integer."""
    model.model_validate({"rows": [[FLOAT32_MAX, -FLOAT32_MAX, 0.0, 1.0]]})
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate({"rows": [[np.nextafter(FLOAT32_MAX, math.inf), 1.0, 1.0, 1.0]]})
    assert validation_details(info.value)[0]["msg"] == (
        f"Input should be within float32's finite range, -{FLOAT32_MAX!r} to {FLOAT32_MAX!r}"
    )


def test_schema_states_the_bounds(model):
    """The OpenAPI document (built from this schema) tells clients the range of a feature value."""
    feature = model.model_json_schema()["properties"]["rows"]["items"]["items"]
    assert feature == {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}


@pytest.mark.parametrize(
    "body",
    [b'{"rows": [["1.0", 1, 1, 1]]}', b'{"rows": [[true, 1, 1, 1]]}', b'{"rows": [[NaN, 1, 1, 1]]}'],
    ids=["string", "bool", "nan"],
)
def test_json_input_is_as_strict_as_python_input(model, body):
    """The guard and BentoML validate the raw bytes: no coercion there either."""
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate_json(body)
    assert validation_details(info.value)[0]["loc"] == ["rows", 0, 0]


def test_error_body_has_documented_shape():
    """error_body serializes to {error, message, details} and round-trips through ErrorResponse."""
    body = json.loads(error_body("invalid_input", "rows: bad.", [{"loc": ["rows"], "msg": "bad"}]))
    assert set(body) == {"error", "message", "details"}
    assert ErrorResponse.model_validate(body).details[0].loc == ["rows"]


def test_summary_counts_further_problems():
    """The message names the first problem and says how many more there are."""
    details = [{"loc": ["rows", 0], "msg": "a"}, {"loc": ["rows", 1], "msg": "b"}]
    assert summarize(details) == "rows.0: a (and 1 more problems)."
    assert summarize([]) == "The request body is invalid."
