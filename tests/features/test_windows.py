"""sql/features/training_windows.sql and inference_windows.sql on hand-built daily rows."""

from __future__ import annotations

import math
from datetime import date

import pytest

from pipelines.features.window_signals import FULL_SIGNALS, SIGNALS6, feature_columns
from pipelines.features.windows import inference_windows, select_feature_set, training_windows

from .builders import VIN_A, VIN_B, VIN_C, daily_row, daily_table

AS_OF = "2026-02-15"

DAILY = daily_table([
    daily_row(VIN_A, "2026-01-31", total_voltage=300.0),  # as_of - 15: before the context
    daily_row(VIN_A, "2026-02-01", total_voltage=301.0, suspect_cell=2, cell_range_p95_mv=40.0),  # as_of - 14
    daily_row(VIN_A, "2026-02-13", total_voltage=313.0, suspect_cell=4, alarm=True),  # as_of - 2
    daily_row(VIN_A, "2026-02-14", total_voltage=314.0, suspect_cell=None),  # as_of - 1, no valid cell that day
    daily_row(VIN_A, "2026-02-28", alarm=True),  # as_of + 13: last day of the horizon
    daily_row(VIN_B, "2026-02-10", total_voltage=410.0, suspect_cell=7),  # as_of - 5
    daily_row(VIN_B, "2026-02-15", alarm=False),  # as_of: first day of the horizon
    daily_row(VIN_B, "2026-03-01", alarm=True),  # as_of + 14: after the horizon
    daily_row(VIN_C, "2026-02-15", alarm=True),  # no context day for as_of 2026-02-15, one for 2026-02-16
])


def rows_by_key(table) -> dict:
    return {(r["vin"], r["as_of"].isoformat()): r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def training():
    return training_windows(DAILY, [AS_OF, "2026-02-16"])


def test_one_example_per_vehicle_with_context_and_as_of(training) -> None:
    assert list(rows_by_key(training)) == [(VIN_B, "2026-02-15"), (VIN_B, "2026-02-16"), (VIN_C, "2026-02-16"),
                                           (VIN_A, "2026-02-15"), (VIN_A, "2026-02-16")]  # ordered by vin, as_of
    c = rows_by_key(training)[(VIN_C, "2026-02-16")]
    assert (c["context_days"], c["alarm_lag1"], c["label"], c["label_days"]) == (1, 1, None, 0)


def test_context_days_map_to_lag_columns_and_missing_days_stay_nan(training) -> None:
    a = training.to_pandas().set_index(["vin", "as_of"]).loc[(VIN_A, date(2026, 2, 15))]
    assert a["context_days"] == 3
    assert (a["total_voltage_lag14"], a["total_voltage_lag2"], a["total_voltage_lag1"]) == (301.0, 313.0, 314.0)
    assert a["cell_range_p95_mv_lag14"] == 40.0
    assert (a["alarm_lag14"], a["alarm_lag2"], a["alarm_lag1"]) == (0, 1, 0)
    for lag in range(3, 14):
        assert math.isnan(a[f"total_voltage_lag{lag}"]), lag  # no row that day: NaN, never -1
        assert math.isnan(a[f"alarm_lag{lag}"]), lag
    assert a["suspect_cell"] == 4  # the latest day that named one


def test_the_window_moves_with_as_of(training) -> None:
    a = rows_by_key(training)[(VIN_A, "2026-02-16")]
    assert a["context_days"] == 2  # 2026-02-01 is now 15 days back
    assert (a["total_voltage_lag14"], a["total_voltage_lag3"], a["total_voltage_lag2"]) == (None, 313.0, 314.0)


def test_label_is_an_alarm_on_any_day_of_the_next_14(training) -> None:
    rows = rows_by_key(training)
    assert (rows[(VIN_A, "2026-02-15")]["label"], rows[(VIN_A, "2026-02-15")]["label_days"]) == (1, 1)  # as_of + 13
    assert (rows[(VIN_A, "2026-02-16")]["label"], rows[(VIN_A, "2026-02-16")]["label_days"]) == (1, 1)
    # B: its as_of day has no alarm and the alarm on as_of + 14 is outside the horizon
    assert (rows[(VIN_B, "2026-02-15")]["label"], rows[(VIN_B, "2026-02-15")]["label_days"]) == (0, 1)
    # one day later that alarm is as_of + 13 and the quiet day is context
    assert (rows[(VIN_B, "2026-02-16")]["label"], rows[(VIN_B, "2026-02-16")]["label_days"]) == (1, 1)


def test_an_unobserved_horizon_gives_no_label() -> None:
    table = training_windows(daily_table([daily_row(VIN_A, "2026-02-14")]), [AS_OF])
    [row] = table.to_pylist()
    assert (row["label"], row["label_days"], row["context_days"]) == (None, 0, 1)


def test_inference_windows_have_the_same_features_and_no_label(training) -> None:
    inference = inference_windows(DAILY, [AS_OF])
    assert "label" not in inference.column_names and "label_days" not in inference.column_names
    assert inference.column_names == [c for c in training.column_names if c not in ("label", "label_days")]
    assert [(r["vin"], r["context_days"], r["suspect_cell"]) for r in inference.to_pylist()] == [(VIN_B, 1, 7),
                                                                                                  (VIN_A, 3, 4)]
    assert inference.to_pylist()[0]["total_voltage_lag5"] == 410.0


def test_feature_sets(training) -> None:
    signals6 = feature_columns("signals6")
    assert len(signals6) == 84 and len(feature_columns("full")) == 14 * len(FULL_SIGNALS)
    assert signals6[:7] == [f"{s}_lag14" for s in SIGNALS6] + ["total_voltage_lag13"]  # oldest day first
    selected = select_feature_set(training, "signals6")
    assert selected.column_names == ["vin", "as_of", "context_days", "suspect_cell", "label", "label_days"] + signals6
    with pytest.raises(ValueError, match="signals6, full"):
        feature_columns("everything")
