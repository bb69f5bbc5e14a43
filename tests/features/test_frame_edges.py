"""Edges of the per-frame list arithmetic in cell_daily.sql and daily_features.sql, every value worked out by hand:
even and odd valid-cell counts with ties, one and two valid cells, null items first and last (cells keep their
positions), an empty and a null cell list, and p95 over one, two and three ranges."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines.features.daily import build_daily

from .builders import VIN_A, VIN_C, frame, frames_table

DAY = "2026-01-07"


def edge_frame(ts: str, *, current: float | None, cells: list[int | None] | None, probes: list[int | None]) -> dict:
    """A frame whose cell and probe lists are taken as given (empty and null lists included)."""
    row = frame(VIN_C, f"{DAY}T{ts}", current=current, cells=[0])
    return {**row, "cell_mv": cells, "probe_temp_c": probes}


FRAMES_C = [
    # 4 valid of 5, a tie in the middle: sorted 3690 3700 3700 3710 -> median 3700; cell 1 null stays cell 1
    edge_frame("05:00:00", current=0.0, cells=[None, 3700, 3690, 3710, 3700], probes=[30, None, 28]),
    # 4 valid, null last: sorted 3695 3701 3705 3711 -> median (3701 + 3705) / 2 = 3703
    edge_frame("05:10:00", current=50.0, cells=[3705, 3701, 3695, 3711, None], probes=[31]),
    # one valid cell: its own median (deviation 0), no range (a range needs two cells)
    edge_frame("05:59:59", current=-20.0, cells=[3600, None, None, None, None], probes=[None, None]),
    # two valid cells: median 3655, range 10
    edge_frame("06:00:00", current=1.0, cells=[3650, 3660, None, None, None], probes=[25, 27, 26]),
    # no cells at all, an empty list and a null list: counted as frames, nothing else
    edge_frame("23:00:00", current=None, cells=[], probes=[None, None]),
    edge_frame("23:30:00", current=0.0, cells=None, probes=[29, 29]),
]
# A vehicle whose only frame has no valid cell and no valid probe.
FRAMES_A = [frame(VIN_A, f"{DAY}T12:00:00", current=0.0, cells=[None, None], probes=[None])]


@pytest.fixture(scope="module")
def result():
    return build_daily(frames_table(FRAMES_C + FRAMES_A), [DAY])


def daily_row(result, vin: str) -> dict:
    [row] = [r for r in result.daily.to_pylist() if r["vin"] == vin]
    return row


def test_deviations_use_each_frames_median_of_its_valid_cells(result) -> None:
    rows = [(r["vin"], r["dt"], r["cell_index"], r["cell_dev_mv"], r["cell_dev_rest_mv"], r["cell_dev_load_mv"],
             r["valid_frames"]) for r in result.cell_daily.to_pylist()]
    d = date.fromisoformat(DAY)
    assert rows == [
        (VIN_C, d, 1, -1.0, -5.0, 1.0, 3),  # +2 (load), 0 (load, the lone cell), -5 (rest)
        (VIN_C, d, 2, 1.0, 2.5, -2.0, 3),  # 0 (rest), -2 (load), +5 (rest)
        (VIN_C, d, 3, -9.0, -10.0, -8.0, 2),
        (VIN_C, d, 4, 9.0, 10.0, 8.0, 2),
        (VIN_C, d, 5, 0.0, 0.0, None, 1),  # valid in the first frame only (at rest)
    ]  # VIN_A has no valid cell: no row


def test_cell_extremes_and_ranges_skip_null_items_and_empty_lists(result) -> None:
    row = daily_row(result, VIN_C)
    assert (row["frame_count"], row["rest_frames"], row["load_frames"], row["hours_covered"]) == (6, 3, 2, 3)
    assert row["total_current"] == pytest.approx(31 / 5)  # 0 + 50 - 20 + 1 + 0; the frame without current skipped
    assert row["cell_max_voltage"] == pytest.approx(14681 / 4 / 1000)  # 3710 3711 3600 3660
    assert row["cell_min_voltage"] == pytest.approx(14635 / 4 / 1000)  # 3690 3695 3600 3650
    assert row["cell_count"] == 4
    # ranges 20 (rest), 16 (load), 10 (rest); the one-cell frame has none
    assert (row["cell_range_mean_mv"], row["cell_range_max_mv"]) == (pytest.approx(46 / 3), 20.0)
    assert row["cell_range_p95_mv"] == pytest.approx(19.6)  # 10 16 20: position 2.9 -> 16 + 0.9 * 4
    assert (row["cell_range_rest_mean_mv"], row["cell_range_rest_max_mv"]) == (15.0, 20.0)
    assert row["cell_range_rest_p95_mv"] == pytest.approx(19.5)  # 10 20: position 1.95 -> 10 + 0.95 * 10
    assert (row["cell_range_load_mean_mv"], row["cell_range_load_p95_mv"], row["cell_range_load_max_mv"]) == (16.0, 16.0, 16.0)


def test_probe_extremes_skip_null_items(result) -> None:
    row = daily_row(result, VIN_C)
    assert row["max_temperature"] == 29.25  # (30 + 31 + 27 + 29) / 4
    assert row["min_temperature"] == 28.25  # (28 + 31 + 25 + 29) / 4
    assert (row["probe_spread_mean_c"], row["probe_spread_max_c"]) == (pytest.approx(4 / 3), 2.0)  # 2, 2, 0
    assert row["probe_count"] == 3


def test_suspect_ties_go_to_the_lowest_cell(result) -> None:
    row = daily_row(result, VIN_C)
    # day deviations -1 1 -9 9 0: |-9| = |9| -> cell 3; median 0, absolute deviations 1 1 9 9 0 -> mad 1
    assert (row["suspect_cell"], row["suspect_cell_dev_mv"], row["suspect_cell_days_7d"]) == (3, -9.0, 1)
    assert row["suspect_cell_z"] == pytest.approx(-9 / 1.4826, rel=1e-12)


def test_a_day_without_a_valid_cell_or_probe_has_nulls_not_zeros(result) -> None:
    row = daily_row(result, VIN_A)
    assert (row["frame_count"], row["rest_frames"], row["hours_covered"]) == (1, 1, 1)
    for column in ("cell_max_voltage", "cell_min_voltage", "cell_count", "cell_range_mean_mv", "cell_range_p95_mv",
                   "cell_range_max_mv", "cell_range_rest_p95_mv", "max_temperature", "probe_count",
                   "probe_spread_mean_c", "suspect_cell", "suspect_cell_dev_mv"):
        assert row[column] is None, column
