"""Why a vehicle scored high: the top XGBoost feature contributions of each row, as the prediction's `reasons`.

XGBoost's `pred_contribs` splits each row's margin (log-odds) into one contribution per feature plus a bias (the
last column); they sum to the margin exactly. A reason is a feature pushing towards an alarm (a positive
contribution), with the value the row carried for it. Boosters are trained on numpy arrays without names, so
column i is `feature_names[i]` of the model's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import xgboost as xgb

from pipelines.schema import REASON_TYPE

TOP_K = 3
CHUNK_ROWS = 20_000  # rows per pred_contribs call: bounds memory at rows x (features + 1) float32
SMALL_MATRIX_ROWS = 1_000


def feature_contributions(booster: xgb.Booster, matrix: np.ndarray, missing_as: float | None = None,
                          chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Per-row log-odds contributions, shape (rows, features + 1); the last column is the bias."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if missing_as is not None:  # the encoding the model was trained with, as inference.predict_fn applies it
        matrix = np.where(np.isnan(matrix), np.float32(missing_as), matrix)
    # Copying a few rows into a DMatrix on every core costs more than the copy (~18 ms for the API's 16 rows under
    # load, against ~0.1 ms on one thread): small matrices are built on one.
    threads = 1 if len(matrix) < SMALL_MATRIX_ROWS else -1
    parts = [booster.predict(xgb.DMatrix(matrix[start:start + chunk_rows], missing=math.nan, nthread=threads),
                             pred_contribs=True)
             for start in range(0, len(matrix), chunk_rows)]
    if not parts:
        return np.zeros((0, matrix.shape[1] + 1), dtype=np.float32)
    return np.concatenate(parts).reshape(len(matrix), -1)


def top_reasons(contributions: np.ndarray, values: np.ndarray, feature_names: Sequence[str],
                k: int = TOP_K) -> pa.ListArray:
    """Per row, up to k features with the largest positive contribution, largest first, as list<REASON_TYPE>.

    `contributions` is `feature_contributions`' output (bias column last), `values` the rows' input values in
    the same column order (NaN, a missing day, becomes a null value). Ties go to the earlier column."""
    names = np.asarray(list(feature_names), dtype=object)
    contributions = np.asarray(contributions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    features = contributions[:, :len(names)]
    if contributions.ndim != 2 or contributions.shape[1] != len(names) + 1 or values.shape != features.shape:
        raise ValueError(f"contributions {np.shape(contributions)} and values {values.shape} do not match "
                         f"{len(names)} feature names (contributions carry one more column, the bias)")
    rows = len(features)
    k = max(0, min(k, len(names)))
    if rows == 0 or k == 0:
        return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, np.int32)), pa.array([], REASON_TYPE))

    # The k largest per row, then ordered: by contribution descending, then column index (a stable sort).
    order = np.argsort(-features, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(features, order, axis=1)
    keep = top > 0
    counts = keep.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    columns = order[keep]  # row-major: each row's kept reasons stay in order
    row_of = np.repeat(np.arange(rows), counts)
    picked = values[row_of, columns]
    reasons = pa.StructArray.from_arrays(
        [pa.array(names[columns].tolist(), pa.string()), pa.array(top[keep], pa.float64()),
         pa.array(picked, pa.float64(), mask=np.isnan(picked))],
        fields=list(REASON_TYPE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), reasons)
