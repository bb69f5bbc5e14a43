"""reasons.py: top-k positive XGBoost contributions on a real (small) booster trained on unnamed numpy arrays."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from pipelines.schema import REASON_TYPE
from pipelines.serving.reasons import feature_contributions, top_reasons

NAMES = ["cell_range_max_mv_lag1", "total_voltage_lag1", "suspect_cell_z_lag1", "max_temperature_lag1", "noise"]


@pytest.fixture(scope="module")
def data() -> tuple[xgb.Booster, np.ndarray]:
    """A booster where the first and third features drive the label, and rows to explain (some values missing)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, len(NAMES))).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 2] + rng.normal(0, 0.3, len(x))) > 0.8).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 1},
                        xgb.DMatrix(x, label=y, missing=math.nan), num_boost_round=20)
    return booster, x[:60]


def test_contributions_sum_to_the_margin_with_the_bias_last(data) -> None:
    booster, rows = data
    contributions = feature_contributions(booster, rows, chunk_rows=7)  # several chunks give one array
    margin = booster.predict(xgb.DMatrix(rows, missing=math.nan), output_margin=True)
    assert contributions.shape == (len(rows), len(NAMES) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), margin, rtol=1e-5, atol=1e-5)
    assert np.ptp(contributions[:, -1]) == 0  # the bias is the same for every row
    np.testing.assert_allclose(1 / (1 + np.exp(-contributions.sum(axis=1))),
                               booster.predict(xgb.DMatrix(rows, missing=math.nan)), rtol=1e-5)


def test_contributions_use_the_models_missing_value_encoding(data) -> None:
    booster, rows = data
    encoded = np.where(np.isnan(rows), np.float32(-1), rows)
    margin = booster.predict(xgb.DMatrix(encoded, missing=math.nan), output_margin=True)
    np.testing.assert_allclose(feature_contributions(booster, rows, missing_as=-1).sum(axis=1), margin,
                               rtol=1e-5, atol=1e-5)


def test_top_reasons_are_the_largest_positive_contributions_in_order_with_names_and_values(data) -> None:
    booster, rows = data
    contributions = feature_contributions(booster, rows)
    reasons = top_reasons(contributions, rows, NAMES, k=3)
    assert reasons.type == pa.list_(REASON_TYPE) and len(reasons) == len(rows)
    for i, row_reasons in enumerate(reasons.to_pylist()):
        positive = sorted(((c, j) for j, c in enumerate(contributions[i, :-1]) if c > 0), key=lambda t: (-t[0], t[1]))
        expected = positive[:3]
        assert [r["feature"] for r in row_reasons] == [NAMES[j] for _, j in expected]
        assert [r["contribution"] for r in row_reasons] == pytest.approx([float(c) for c, _ in expected])
        for reason, (_, j) in zip(row_reasons, expected, strict=True):
            value = rows[i, j]
            assert reason["value"] == (None if np.isnan(value) else pytest.approx(float(value)))
    counts = [len(r) for r in reasons.to_pylist()]
    assert max(counts) == 3 and min(counts) < 3, "rows with fewer positive contributions get fewer reasons"


def test_a_missing_value_is_a_null_value_in_its_reason() -> None:
    contributions = np.array([[0.5, 0.2, -0.1, 0.3]])  # three features and the bias
    values = np.array([[np.nan, 2.0, 3.0]])
    reasons = top_reasons(contributions, values, ["a", "b", "c"], k=3).to_pylist()
    assert reasons == [[{"feature": "a", "contribution": 0.5, "value": None},
                        {"feature": "b", "contribution": 0.2, "value": 2.0}]]


def test_ties_go_to_the_earlier_column_and_k_bounds_the_list() -> None:
    contributions = np.array([[0.1, 0.4, 0.4, 0.0, 9.9], [-1.0, -2.0, -0.5, 0.0, 1.0]])
    values = np.arange(8, dtype=float).reshape(2, 4)
    reasons = top_reasons(contributions, values, ["a", "b", "c", "d"], k=2).to_pylist()
    assert [[r["feature"] for r in row] for row in reasons] == [["b", "c"], []]  # the bias (9.9, 1.0) is no reason
    assert top_reasons(contributions, values, ["a", "b", "c", "d"], k=10).to_pylist()[0][2]["feature"] == "a"


def test_no_rows_give_an_empty_list_array_and_mismatched_shapes_are_an_error() -> None:
    empty = top_reasons(np.zeros((0, 4)), np.zeros((0, 3)), ["a", "b", "c"])
    assert len(empty) == 0 and empty.type == pa.list_(REASON_TYPE)
    with pytest.raises(ValueError, match="3 feature names"):
        top_reasons(np.zeros((2, 3)), np.zeros((2, 3)), ["a", "b", "c"])
