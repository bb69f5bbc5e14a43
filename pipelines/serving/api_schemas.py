"""The prediction API's bodies: request items checked into values, answers and errors as documented models.

A `POST /v1/predictions` body is one item or a JSON list of items. An item is

    {"vin": "LSVSYN00000000001", "date": "2026-03-01", "features": "<84 comma-separated values>"}

the reference solution's body, scored by the `signals6` champion (`features` may also be a JSON list of numbers;
an empty field, null, `nan` or `none` is a missing day), or `{"vin", "date"}` alone: the `full` champion scores the
lake's daily rows of the 14 days before `date`. `request_id` is optional (see api.py for idempotency). Unknown
fields are refused, so a misspelt `features` cannot quietly turn a reference request into a lake request.

Every error is `ApiError`: a status and a list of `{"loc": [...], "msg": ..., "type": ...}` that names where
(`["body", 2, "features"]` is the third list item's features) and what is wrong, like FastAPI's own 422 bodies.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.quality.rules import VIN_PATTERN
from pipelines.serving.inference import InvalidInput, json_rows

VIN_RULE = "17 characters of A–Z (no I, O, Q) and 0–9"  # the words of the ingest check (pipelines/ingest/checks.py)
DATE_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
REQUEST_ID_RULE = "1–128 characters of A–Z a–z 0–9 . _ : - starting with a letter or digit"
EXAMPLE_VIN = "LSVSYN00000000001"
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(2999, 12, 31)  # dates outside are typing errors


class ApiError(Exception):
    """A request the API refuses: the HTTP status and the problems, each naming where it is."""

    def __init__(self, status: int, problems: list[dict], headers: dict[str, str] | None = None):
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems))
        self.status, self.problems, self.headers = status, problems, headers or {}


def problem(loc: list[str | int], msg: str, kind: str) -> dict:
    """One entry of an error body's `detail`."""
    return {"loc": list(loc), "msg": msg, "type": kind}


def check_vin(value: str) -> str:
    """The VIN if it has the ingest rule's form (ISO 3779), else a ValueError saying so."""
    if not re.match(VIN_PATTERN, value):
        raise ValueError(f"VIN {value[:40]!r} is not {VIN_RULE}")
    return value


def parse_day(text: str, name: str = "date") -> dt.date:
    """A YYYY-MM-DD calendar date, else a ValueError naming the value and the form."""
    if not DATE_FORMAT.match(text):
        raise ValueError(f"{name} {text[:40]!r} is not a date of the form YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"{name} {text!r} is not a calendar date ({error})") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{name} {text!r} is outside {FIRST_DAY} … {LAST_DAY}")
    return day


def check_request_id(value: str) -> str:
    """A client's request id if it has a safe form (it names lake objects), else a ValueError."""
    if not REQUEST_ID_FORMAT.match(value):
        raise ValueError(f"request id {value[:40]!r} must be {REQUEST_ID_RULE}")
    return value


def parse_features(value: object) -> list[float]:
    """Feature values from a comma-separated string or a JSON list (missing → NaN), read as inference.py reads a row."""
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise ValueError("must be one line of comma-separated values")
        if not value.strip():
            raise ValueError("is empty: send the comma-separated values (84 for the reference request)")
    elif isinstance(value, list):
        if not value:
            raise ValueError("is an empty list: send the values (84 for the reference request)")
    else:
        raise ValueError(f"must be a string of comma-separated values or a list of numbers, "
                         f"not {type(value).__name__}")
    try:
        row = json_rows(json.dumps({"features": value}))[0]
    except RecursionError:
        raise ValueError("is nested too deeply: send a flat list of numbers") from None
    except InvalidInput as error:
        # inference.py speaks of rows and columns of a matrix; here the item is one row of values
        raise ValueError(re.sub(r"^row 1, column (\d+)", r"value \1", str(error))) from None
    return row.tolist()


class PredictionRequest(BaseModel):
    """One vehicle and as_of date to score: with `features` (reference request, signals6) or without (full)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"vin": EXAMPLE_VIN, "date": "2026-03-01",
         "features": ",".join(["352.1,-8.4,3.72,3.68,31,26"] * 14)},
        {"vin": EXAMPLE_VIN, "date": "2026-03-01"},
    ]})

    vin: str = Field(description=f"the vehicle: {VIN_RULE}", examples=[EXAMPLE_VIN])
    date: str = Field(description="the as_of date, YYYY-MM-DD: the features are the 14 days before it, the "
                                  "prediction is for an alarm on it or the 13 days after", examples=["2026-03-01"])
    features: str | list[float | None] | None = Field(
        None, description="the reference request's 84 values, oldest day first, each day total voltage (V), total "
                          "current (A), cell max and min voltage (V), max and min temperature (°C); empty or null is a "
                          "missing day. Leave out to use the lake's daily rows (the `full` model).")
    request_id: str | None = Field(None, description=f"idempotency key ({REQUEST_ID_RULE}); overrides X-Request-ID")

    @field_validator("vin")
    @classmethod
    def _vin(cls, value: str) -> str:
        return check_vin(value)

    @field_validator("date")
    @classmethod
    def _date(cls, value: str) -> str:
        parse_day(value)
        return value

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: object) -> list[float] | None:
        return None if value is None else parse_features(value)

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str | None) -> str | None:
        return None if value is None else check_request_id(value)

    @property
    def as_of(self) -> dt.date:
        """The as_of date as a date."""
        return dt.date.fromisoformat(self.date)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (use null for a missing value)")


def read_items(raw: bytes, max_items: int) -> tuple[list[PredictionRequest], bool]:
    """The checked items of a POST body and whether it was a list; an ApiError (422) naming every bad field."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ApiError(422, [problem(["body"], f"body is not UTF-8 text (byte {error.start}: {error.reason})",
                                     "body_encoding")]) from None
    if not text.strip():
        raise ApiError(422, [problem(["body"], 'body is empty: send {"vin": …, "date": …, "features": …} '
                                               "or a list of such items", "missing")])
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as error:
        raise ApiError(422, [problem(["body"], f"body is not valid JSON: {error}", "json_invalid")]) from None
    except RecursionError:
        raise ApiError(422, [problem(["body"], "body is nested too deeply to be a prediction request",
                                     "json_invalid")]) from None
    if isinstance(body, dict):
        items, many = [body], False
    elif isinstance(body, list):
        items, many = body, True
        if not items:
            raise ApiError(422, [problem(["body"], "the list holds no items: send at least one", "too_short")])
        if len(items) > max_items:
            raise ApiError(422, [problem(["body"], f"the list holds {len(items):,} items, more than the "
                                                   f"{max_items:,} one request may hold (CELLGUARD_API_MAX_ITEMS): "
                                                   "split it", "too_long")])
    else:
        raise ApiError(422, [problem(["body"], f"body must be a JSON object (one item) or a list of items, "
                                               f"not {_json_type(body)}", "model_type")])
    parsed, problems = [], []
    for index, item in enumerate(items):
        where: list[str | int] = ["body", index] if many else ["body"]
        if not isinstance(item, dict):
            problems.append(problem(where, f"item must be an object with vin and date, not {_json_type(item)}",
                                    "model_type"))
            continue
        try:
            parsed.append(PredictionRequest.model_validate(item))
        except ValidationError as error:
            problems += [problem([*where, *e["loc"]], _message(e), e["type"]) for e in error.errors()]
    if problems:
        raise ApiError(422, problems)
    return parsed, many


def _message(error: Any) -> str:
    """Pydantic's message, in the words of this API where pydantic's are generic."""
    field = error["loc"][-1] if error["loc"] else "value"
    if error["type"] == "missing":
        return f"{field} is required" + (f" ({VIN_RULE})" if field == "vin" else
                                         " (YYYY-MM-DD, the as_of date)" if field == "date" else "")
    if error["type"] == "extra_forbidden":
        return (f"unknown field {field!r}: an item holds vin, date, and optionally features and request_id "
                f"(leave features out to score the lake's daily rows)")
    text = error["msg"]
    return text.removeprefix("Value error, ")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# ---------------------------------------------------------------------------------------------- answers


class Reason(BaseModel):
    """A feature pushing the probability up: its log-odds contribution and the value it had (null: missing)."""

    feature: str
    contribution: float
    value: float | None


class Prediction(BaseModel):
    """One stored prediction (DESIGN.md "prediction")."""

    request_id: str
    vin: str
    date: dt.date = Field(description="the as_of date")
    feature_set: str = Field(description="signals6 (reference request) or full (lake's daily rows)")
    model_version: str
    probability: float = Field(description="probability of a cell consistency alarm on date … date + 13")
    alarm: bool = Field(description="probability >= threshold")
    threshold: float = Field(description="the model's alarm threshold (chosen on validation data)")
    suspect_cell: int | None = Field(description="1-based index of the drifting cell: the latest suspect in the "
                                                 "lake's daily rows of the 14 days before date (null if none)")
    reasons: list[Reason] = Field(description="up to 3 features with the largest positive contributions")
    source: str = Field(description="api or batch")
    created_at: dt.datetime


class PredictionAnswer(Prediction):
    """A prediction as POST answers it."""

    replayed: bool = Field(description="true when the request id was seen before: the stored prediction, not "
                                       "scored again")


class VehiclePredictions(BaseModel):
    """A vehicle's latest predictions, newest date first."""

    vin: str
    predictions: list[Prediction]


class Alert(BaseModel):
    """The start of an alarm episode (batch inference records them)."""

    vin: str
    feature_set: str
    first_as_of: dt.date
    model_version: str
    probability: float
    threshold: float
    suspect_cell: int | None
    created_at: dt.datetime
    notified_at: dt.datetime | None
    channel: str | None


class Alarms(BaseModel):
    """Predictions at or above their threshold, and alarm episodes that started, in a date range."""

    model_config = ConfigDict(populate_by_name=True)

    first: dt.date = Field(alias="from")
    last: dt.date = Field(alias="to")
    vehicles: int = Field(description="distinct vehicles with an alarm in the range")
    alarms: list[Prediction]
    alerts: list[Alert]


class ModelInfo(BaseModel):
    """The champion of one feature set as this API serves it."""

    feature_set: str
    request: str = Field(description="which request body this model answers")
    serving: bool
    problem: str | None = None
    version: str | None = None
    threshold: float | None = None
    feature_count: int | None = None
    metrics: dict[str, Any] | None = Field(None, description="on the model's time-split test window")
    reference_metrics: dict[str, Any] | None = Field(None, description="the reference recipe on the same split")
    training_data: dict[str, Any] | None = None
    created_at: str | None = None
    loaded_at: dt.datetime | None = None
    report_url: str | None = None


class Models(BaseModel):
    """Each feature set's champion."""

    models: list[ModelInfo]


class Health(BaseModel):
    """Liveness and the loaded model versions."""

    status: str
    models: dict[str, str | None]


class ErrorItem(BaseModel):
    """Where a problem is and what it is."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx body."""

    detail: list[ErrorItem]
