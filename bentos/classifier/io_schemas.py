"""Request and response shapes of the classifier service, and the one error shape it answers with.

Kept free of BentoML and TensorFlow so that the request guard, the service and the unit tests share
one definition, and so that the served OpenAPI document changes only when these types change.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, Field

# strict: "1.5" or true is not a number here (pydantic would coerce them by default);
# allow_inf_nan=False: Python's JSON parser accepts NaN and Infinity, the model must never see them.
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def make_rows_type(n_features: int, max_rows: int) -> Any:
    """The type of `rows`: 1 to `max_rows` rows of exactly `n_features` finite numbers.

    The service annotates its API with it, so the OpenAPI document states the limits too.
    """
    row = Annotated[list[Feature], Field(min_length=n_features, max_length=n_features)]
    return Annotated[list[row], Field(min_length=1, max_length=max_rows)]


def make_request_model(n_features: int, max_rows: int) -> type[BaseModel]:
    """Build the request model for a model with `n_features` inputs and at most `max_rows` rows."""
    rows_type = make_rows_type(n_features, max_rows)

    class PredictRequest(BaseModel):
        """A batch of feature rows, raw (unscaled) values in the training data's column order."""

        model_config = pydantic.ConfigDict(extra="forbid")
        rows: rows_type  # type: ignore[valid-type]

    return PredictRequest


class Prediction(BaseModel):
    """The prediction for one row."""

    label: str = Field(description="The most probable class.", examples=["benign"])
    probabilities: dict[str, float] = Field(
        description="Probability of each class; they sum to 1.",
        examples=[{"malignant": 0.02, "benign": 0.98}],
    )
    model_version: str = Field(description="Content hash of the model that answered.", examples=["3f2a9c0d1e4b5a6c"])


class ErrorDetail(BaseModel):
    """One problem in a rejected request."""

    loc: list[str | int] = Field(description="Where in the body the problem is, e.g. [rows, 0, 3].")
    msg: str


class ErrorResponse(BaseModel):
    """The body of every 4xx answer of the service."""

    error: str = Field(
        description="Machine-readable code: malformed_json, unsupported_media_type, payload_too_large, invalid_input."
    )
    message: str = Field(description="One sentence naming the problem.")
    details: list[ErrorDetail] = Field(default_factory=list)


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """Serialize an error in the documented shape."""
    return ErrorResponse(error=code, message=message, details=details or []).model_dump_json().encode()


def validation_details(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic errors into `ErrorDetail` dicts without echoing the (possibly huge) input."""
    return [
        {"loc": [str(p) if not isinstance(p, int) else p for p in err["loc"]], "msg": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


def summarize(details: list[dict[str, Any]]) -> str:
    """One sentence for the `message` field: the first problem and how many there are."""
    if not details:
        return "The request body is invalid."
    first = details[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
    return f"{where}: {first['msg']}{more}."
