"""sql/features/suspect_cells.sql: the most deviating cell, its robust z-score, and persistence over 7 days."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from pipelines.features.daily import build_daily, date_table
from pipelines.features.runner import run_sql

from .builders import VIN_A, VIN_B, cell_rows, cell_table, frame, frames_table


def suspects(rows: list[dict], days: list[str]) -> list[dict]:
    return run_sql("features/suspect_cells", cell_daily=cell_table(rows), dates=date_table(days)).to_pylist()


def test_trailing_mean_covers_the_day_and_the_six_before() -> None:
    rows = (cell_rows(VIN_A, "2026-01-03", [100.0, 0.0, 0.0])  # 7 days before: outside the window
            + cell_rows(VIN_A, "2026-01-04", [0.0, -4.0, 0.0])  # 6 days before: inside
            + cell_rows(VIN_A, "2026-01-10", [1.0, -2.0, 0.5]))
    [row] = suspects(rows, ["2026-01-10"])
    # 7-day means: 0.5, -3, 0.25 (cell 1 would win with the 100 mV day counted)
    assert (row["vin"], row["dt"], row["suspect_cell"]) == (VIN_A, date(2026, 1, 10), 2)
    assert (row["suspect_cell_dev_mv"], row["suspect_cell_dev_7d_mv"], row["suspect_cell_days_7d"]) == (-2.0, -3.0, 2)
    assert (row["suspect_cell_dev_rest_mv"], row["suspect_cell_dev_load_mv"]) == (-2.0, -4.0)
    # today 1 -2 0.5: median 0.5, |x - median| 0.5 2.5 0 -> mad 0.5
    assert row["suspect_cell_z"] == pytest.approx(-2.5 / (1.4826 * 0.5), rel=1e-12)
    # 7-day 0.5 -3 0.25: median 0.25, |x - median| 0.25 3.25 0 -> mad 0.25
    assert row["suspect_cell_z_7d"] == pytest.approx(-3.25 / (1.4826 * 0.25), rel=1e-12)


def test_zero_mad_gives_no_z_score_and_ties_go_to_the_lowest_cell() -> None:
    rows = cell_rows(VIN_A, "2026-01-10", [0.0, 0.0, 0.0, 5.0]) + cell_rows(VIN_B, "2026-01-10", [3.0, -3.0, 0.0])
    by_vin = {r["vin"]: r for r in suspects(rows, ["2026-01-10"])}
    assert (by_vin[VIN_A]["suspect_cell"], by_vin[VIN_A]["suspect_cell_dev_mv"]) == (4, 5.0)
    assert by_vin[VIN_A]["suspect_cell_z"] is None and by_vin[VIN_A]["suspect_cell_z_7d"] is None
    assert by_vin[VIN_B]["suspect_cell"] == 1  # |3| = |-3|
    assert by_vin[VIN_B]["suspect_cell_z"] == pytest.approx(3 / (1.4826 * 3), rel=1e-12)  # median 0, |x| 3 3 0: mad 3


def test_only_the_asked_dates_get_a_row() -> None:
    rows = cell_rows(VIN_A, "2026-01-09", [1.0, -1.0]) + cell_rows(VIN_A, "2026-01-10", [2.0, -2.0])
    assert [r["dt"] for r in suspects(rows, ["2026-01-10"])] == [date(2026, 1, 10)]


# VIN_B over three days, one frame a day at rest, five cells: cell 3 sits 8 mV low every day, cell 5 jumps 20 mV
# high on the third day only. Frame medians are 3700 each day.
PACK_DAYS = {
    "2026-01-03": [3700, 3701, 3692, 3699, 3700],
    "2026-01-04": [3700, 3701, 3692, 3699, 3700],
    "2026-01-05": [3700, 3701, 3692, 3699, 3720],
}


def pack_frames(days: list[str]) -> pa.Table:
    return frames_table([frame(VIN_B, f"{d}T12:00:00", current=0.0, cells=PACK_DAYS[d]) for d in days])


def test_a_persistent_drift_outranks_a_one_day_spike() -> None:
    daily = build_daily(pack_frames(list(PACK_DAYS)), list(PACK_DAYS)).daily.to_pylist()
    assert [r["suspect_cell"] for r in daily] == [3, 3, 3]
    last = daily[-1]
    # on the last day cell 5 deviates most (+20), but its 7-day mean is 20 / 3 against cell 3's -8
    assert (last["suspect_cell_dev_mv"], last["suspect_cell_dev_7d_mv"], last["suspect_cell_days_7d"]) == (-8.0, -8.0, 3)
    # today 0 1 -8 -1 20: median 0, mad 1; 7-day 0 1 -8 -1 6.67: median 0, mad 1
    assert last["suspect_cell_z"] == pytest.approx(-8 / 1.4826, rel=1e-12)
    assert last["suspect_cell_z_7d"] == pytest.approx(-8 / 1.4826, rel=1e-12)


def test_a_day_alone_picks_the_spike() -> None:
    [row] = build_daily(pack_frames(["2026-01-05"]), ["2026-01-05"]).daily.to_pylist()
    assert (row["suspect_cell"], row["suspect_cell_dev_mv"], row["suspect_cell_days_7d"]) == (5, 20.0, 1)


def test_history_from_earlier_runs_gives_the_same_suspect_as_one_run() -> None:
    first = build_daily(pack_frames(["2026-01-03", "2026-01-04"]), ["2026-01-03", "2026-01-04"])
    # the history also holds a stale row of the recomputed day: it must be replaced, not counted twice
    stale = cell_table(cell_rows(VIN_B, "2026-01-05", [0.0, 0.0, 0.0, 0.0, 99.0]))
    history = pa.concat_tables([first.cell_daily, stale.cast(first.cell_daily.schema)])
    later = build_daily(pack_frames(["2026-01-05"]), ["2026-01-05"], cell_daily_history=history)
    together = build_daily(pack_frames(list(PACK_DAYS)), list(PACK_DAYS))
    assert later.daily.to_pylist() == together.daily.slice(2).to_pylist()
    assert later.cell_daily.num_rows == 5  # only the computed day: the caller keeps it as history
