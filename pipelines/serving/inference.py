"""SageMaker XGBoost (script mode) inference handlers for CellGuard models: model_fn, input_fn, predict_fn, output_fn.

The file a SageMaker real-time endpoint or Batch Transform loads as its entry point, and the one the local
model server calls. It needs only the standard library, numpy and xgboost (no `pipelines` package).

Requests (`input_fn`) hold one or more rows of the model's features in `feature_names.json` order
(`signals6`: the reference solution's 84 values, oldest day first):

- `text/csv`: one row per line, comma-separated, no header row. An empty field, `nan`, `null`, `na` or
  `none` is a missing value (NaN). Blank lines are skipped.
- `application/json`, any of:
      {"instances": [[v1, v2, ...], ...]}          rows as lists (SageMaker's JSON instances format)
      {"instances": [{"features": ...}, ...]}      rows as objects
      {"features": "v1,v2,..."}                    one row, as the reference client sends it (other keys ignored)
      {"features": [v1, v2, ...]}                  one row, as a list
      [[v1, ...], ...]  or  [{"features": ...}, ...]  a list of rows
      [v1, v2, ...]                                one row
  A value is a number, null (missing), or a string read like a CSV field; a row may also be a CSV string.

Responses (`output_fn`): `text/csv` one probability per line; `application/json`
`{"predictions": [{"score": p}, ...]}` as SageMaker's XGBoost container answers. No Accept (or `*/*`) means
`text/csv`. `output_fn` returns `(body, content_type)`, which SageMaker's serving toolkits accept.

Every request error is an `InvalidInput` (a ValueError) whose message names the row (1-based), the column
(1-based) and the problem; `UnsupportedContentType` and `UnsupportedAccept` are its kinds for media types
these handlers do not speak.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

# The same names as pipelines/training/train.py (not imported: this file runs without the package).
MODEL_FILE = "xgboost-model"
FEATURE_NAMES_FILE = "feature_names.json"
ARCHIVE_FILE = "model.tar.gz"

CSV = "text/csv"
JSON = "application/json"
CONTENT_TYPES = (CSV, JSON)
MISSING_TOKENS = frozenset({"", "nan", "null", "na", "none"})
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class InvalidInput(ValueError):
    """A request the model cannot score; the message names the row and the problem."""


class UnsupportedContentType(InvalidInput):
    """The request's Content-Type is not one these handlers read."""


class UnsupportedAccept(InvalidInput):
    """The Accept header asks for a type these handlers do not write."""


@dataclass(frozen=True)
class CellGuardModel:
    """A booster with the column order and the missing-value encoding it was trained with."""

    booster: xgb.Booster
    feature_set: str
    feature_names: tuple[str, ...]
    missing_as: float | None

    @property
    def feature_count(self) -> int:
        """How many values a request row must carry."""
        return len(self.feature_names)


# ---------------------------------------------------------------------------------------------- model_fn


def model_fn(model_dir: str | Path) -> CellGuardModel:
    """The model in a folder: loose `xgboost-model` + `feature_names.json` (as SageMaker unpacks them) or model.tar.gz."""
    model_dir = Path(model_dir)
    if (model_dir / MODEL_FILE).is_file():
        names_path = model_dir / FEATURE_NAMES_FILE
        if not names_path.is_file():
            raise FileNotFoundError(f"{model_dir}: {MODEL_FILE} without {FEATURE_NAMES_FILE} (train.py writes both)")
        return load_model(model_dir / MODEL_FILE, (model_dir / MODEL_FILE).read_bytes(), names_path.read_bytes())
    archive = model_dir / ARCHIVE_FILE
    if archive.is_file():
        with tarfile.open(archive, "r:gz") as tar:
            return load_model(archive, _member(tar, archive, MODEL_FILE), _member(tar, archive, FEATURE_NAMES_FILE))
    raise FileNotFoundError(f"{model_dir}: neither {MODEL_FILE} + {FEATURE_NAMES_FILE} nor {ARCHIVE_FILE}")


def _member(tar: tarfile.TarFile, archive: Path, name: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise FileNotFoundError(f"{archive}: no file {name!r} inside (holds {', '.join(tar.getnames())})")
    return member.read()


def load_model(source: str | Path, model_bytes: bytes, metadata_bytes: bytes) -> CellGuardModel:
    """A model from the bytes of `xgboost-model` and `feature_names.json`; `source` only names it in errors."""
    metadata = json.loads(metadata_bytes)
    names = metadata.get("feature_names") if isinstance(metadata, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: {FEATURE_NAMES_FILE} needs a non-empty list 'feature_names'")
    booster = xgb.Booster()
    booster.load_model(bytearray(model_bytes))
    if booster.num_features() != len(names):
        raise ValueError(f"{source}: the booster takes {booster.num_features()} features but "
                         f"{FEATURE_NAMES_FILE} lists {len(names)}")
    missing_as = metadata.get("missing_as")
    return CellGuardModel(booster=booster, feature_set=str(metadata.get("feature_set", "unknown")),
                          feature_names=tuple(names), missing_as=None if missing_as is None else float(missing_as))


# ---------------------------------------------------------------------------------------------- input_fn


def input_fn(request_body: bytes | str, request_content_type: str | None) -> np.ndarray:
    """The request's rows as a float64 matrix (NaN = missing), one row per record; see the module doc for formats."""
    media_type = _media_type(request_content_type)
    if media_type not in CONTENT_TYPES:
        shown = request_content_type or "no Content-Type"
        raise UnsupportedContentType(f"content type {shown!r} is not supported: send {CSV} or {JSON}")
    text = _text(request_body)
    return csv_rows(text) if media_type == CSV else json_rows(text)


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _text(body: bytes | bytearray | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"request body is not UTF-8 text (byte {error.start}: {error.reason})") from None


def csv_rows(text: str) -> np.ndarray:
    """Rows of comma-separated values without a header (blank lines skipped) as a float64 matrix."""
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    if not rows:
        raise InvalidInput(f"empty {CSV} request: send one row of comma-separated values per line")
    _check_widths(rows)
    table = np.array(rows, dtype=str)
    table[table == ""] = "nan"
    try:
        matrix = table.astype(np.float64)  # the common case in one C loop
    except ValueError:
        # Tokens numpy does not read ("null", quoted values) or a real error: go value by value to say which.
        matrix = _parse_rows(rows, header_hint=True)
    _check_range(matrix, rows)
    return matrix


def json_rows(text: str) -> np.ndarray:
    """Rows from a JSON body in one of the shapes the module doc lists, as a float64 matrix."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"request body is not valid JSON: {error}") from None
    rows = [_json_row(item, number) for number, item in enumerate(_json_items(body), start=1)]
    _check_widths(rows)
    matrix = _parse_rows(rows, header_hint=False)
    _check_range(matrix, rows)
    return matrix


def _json_items(body: object) -> list:
    """The row items of a JSON body, before each is turned into a list of values."""
    if isinstance(body, dict):
        if "instances" in body:
            items = body["instances"]
            if not isinstance(items, list):
                raise InvalidInput(f"'instances' must be a list of rows, got {type(items).__name__}")
        elif "features" in body:
            items = [body]
        else:
            keys = ", ".join(map(repr, list(body)[:5])) or "none"
            raise InvalidInput(f"JSON object needs 'instances' (a list of rows) or 'features' (one row); keys: {keys}")
    elif isinstance(body, list):
        # A list of plain values is one row; otherwise every item is a row.
        items = [body] if body and not any(isinstance(item, list | dict) for item in body) else body
    else:
        raise InvalidInput(f"JSON body must be an object or a list of rows, got {type(body).__name__}")
    if not items:
        raise InvalidInput("request holds no rows")
    return items


def _json_row(item: object, number: int) -> list:
    """One row's values from a list, a CSV string or an object with 'features'."""
    if isinstance(item, dict):
        if "features" not in item:
            raise InvalidInput(f"row {number}: object without 'features' (keys: {', '.join(map(repr, list(item)[:5]))})")
        item = item["features"]
    if isinstance(item, str):
        return item.split(",")
    if isinstance(item, list):
        return item
    raise InvalidInput(f"row {number}: expected a list of values, a comma-separated string or "
                       f"{{\"features\": ...}}, got {type(item).__name__} {str(item)[:40]!r}")


def _check_widths(rows: Sequence[Sequence[object]]) -> None:
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InvalidInput(f"row {number} has {len(row)} values but row 1 has {width}: every row needs "
                               f"the same number of values, one per model feature")


def _parse_rows(rows: Sequence[Sequence[object]], header_hint: bool) -> np.ndarray:
    plain = _plain_matrix(rows)
    if plain is not None:
        return plain
    matrix = np.empty((len(rows), len(rows[0])), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            matrix[r, c] = _number(value, r + 1, c + 1, header_hint)
    return matrix


def _plain_matrix(rows: Sequence[Sequence[object]]) -> np.ndarray | None:
    """The common case in one numpy call: every value a number, or every value number text or empty (missing).

    None for anything else, and for any value numpy refuses: `_number`, value by value, then decides what it is or
    names what is wrong. Same results as `_number` (~40× faster for the reference's 84 values): numpy reads text
    with Python's float(), and "nan" is missing either way."""
    try:
        if all(type(value) is str for row in rows for value in row):
            return np.array([[value or "nan" for value in row] for row in rows], dtype=np.float64)
        if all(type(value) in (int, float) for row in rows for value in row):
            return np.array(rows, dtype=np.float64)
    except (ValueError, OverflowError):
        return None
    return None


def _number(value: object, row: int, column: int, header_hint: bool) -> float:
    """One value as a float (NaN when missing), or an InvalidInput naming where it is and what is wrong."""
    where = f"row {row}, column {column}"
    if value is None:
        return math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise InvalidInput(f"{where}: {value} is too large") from None
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {json.dumps(value)[:40]} is not a number (use a number, or null for missing)")
    token = value.strip().strip('"').strip()
    if token.lower() in MISSING_TOKENS:
        return math.nan
    try:
        return float(token)
    except ValueError:
        hint = " (text/csv requests carry no header row)" if header_hint and row == 1 and token[:1].isalpha() else ""
        raise InvalidInput(f"{where}: {value[:40]!r} is not a number{hint}") from None


def _check_range(matrix: np.ndarray, rows: Sequence[Sequence[object]]) -> None:
    """Reject infinities and values float32 (XGBoost's type) cannot hold; NaN stays missing."""
    bad = np.abs(matrix) > _FLOAT32_MAX
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidInput(f"row {r + 1}, column {c + 1}: {str(rows[r][c])[:40]!r} is not a finite number "
                           f"a model can use (leave the field empty for a missing value)")


# ---------------------------------------------------------------------------------------------- predict_fn


def predict_fn(input_data: np.ndarray, model: CellGuardModel) -> np.ndarray:
    """Alarm probabilities for every row, scored in one call with the model's missing-value encoding."""
    matrix = np.asarray(input_data, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != model.feature_count:
        got = matrix.shape[1] if matrix.ndim == 2 else f"an array of shape {matrix.shape}"
        rows = f" in each of {matrix.shape[0]} rows" if matrix.ndim == 2 and matrix.shape[0] > 1 else ""
        raise InvalidInput(f"expected {model.feature_count} values per row for feature set {model.feature_set}, "
                           f"got {got}{rows}")
    if model.missing_as is not None:
        # Trained with missing days encoded as a number (the reference's -1): score the same encoding.
        matrix = np.where(np.isnan(matrix), np.float32(model.missing_as), matrix)
    # inplace_predict skips building a DMatrix: the same scores, ~3× less work for the API's one-row calls.
    return model.booster.inplace_predict(matrix, missing=math.nan, validate_features=False)


# ---------------------------------------------------------------------------------------------- output_fn


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str, str]:
    """The probabilities as (body, content type): text/csv one per line, or SageMaker XGBoost's JSON shape."""
    media_type = response_type(accept)
    scores = [str(score) for score in np.asarray(prediction, dtype=np.float32).ravel()]
    if media_type == CSV:
        return "".join(f"{score}\n" for score in scores), CSV
    return json.dumps({"predictions": [{"score": float(score)} for score in scores]}), JSON


def response_type(accept: str | None) -> str:
    """The first type in an Accept header these handlers write (no header or */* means text/csv)."""
    for part in (accept or "*/*").split(","):
        media_type = _media_type(part)
        if media_type in ("", "*/*", "text/*"):
            return CSV
        if media_type == "application/*":
            return JSON
        if media_type in CONTENT_TYPES:
            return media_type
    raise UnsupportedAccept(f"accept {accept!r} is not supported: ask for {CSV} or {JSON}")
