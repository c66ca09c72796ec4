"""Request and response shapes of the classifier service, and the one error shape it answers with.

Kept free of BentoML and the model runtime so that the request guard, the service and the unit tests share
one definition, and so that the served OpenAPI document changes only when these types change.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, Field

# The largest finite float32 (numpy.finfo(numpy.float32).max). The model runs in float32: a value
# that is finite as JSON/float64 but beyond this (1e39) becomes infinite and its probabilities NaN.
FLOAT32_MAX = 3.4028234663852886e38

# strict: "1.5" or true is not a number here (pydantic would coerce them by default);
# allow_inf_nan=False: the JSON parser accepts NaN and Infinity, the model must never see them;
# ge/le: float32's finite range, also stated in the OpenAPI document (minimum/maximum).
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


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
    """The body of every 4xx and 5xx answer of the service (docs/api.md lists when each code is given)."""

    error: str = Field(
        description=(
            "Machine-readable code. From the request guard of /predict: malformed_json (400), "
            "payload_too_large (413), unsupported_media_type (415), invalid_input (422). "
            "From the server: bad_request (400), not_found (404), method_not_allowed (405), "
            "too_many_requests (429), internal_error (500), service_unavailable (503), timeout (504); "
            "any other status gets its HTTP reason phrase in snake_case."
        ),
        examples=["invalid_input"],
    )
    message: str = Field(description="One sentence naming the problem.")
    details: list[ErrorDetail] = Field(default_factory=list)


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """Serialize an error in the documented shape."""
    return ErrorResponse(error=code, message=message, details=details or []).model_dump_json().encode()


def validation_details(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic errors into `ErrorDetail` dicts without echoing the (possibly huge) input."""
    return [
        {"loc": [str(p) if not isinstance(p, int) else p for p in err["loc"]], "msg": _message(err)}
        for err in exc.errors(include_input=False, include_url=False)
    ]


def _message(err: Any) -> str:
    # pydantic prints the float32 bound as a 39-digit integer; say what the limit is instead.
    bound = err.get("ctx", {}).get("le", err.get("ctx", {}).get("ge"))
    if err["type"] in ("less_than_equal", "greater_than_equal") and abs(bound) == FLOAT32_MAX:
        return f"Input should be within float32's finite range, -{FLOAT32_MAX!r} to {FLOAT32_MAX!r}"
    return err["msg"]


def summarize(details: list[dict[str, Any]]) -> str:
    """One sentence for the `message` field: the first problem and how many there are."""
    if not details:
        return "The request body is invalid."
    first = details[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
    return f"{where}: {first['msg']}{more}."
