"""sql/features/cell_daily.sql and daily_features.sql on five hand-built frames, every value worked out by hand."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.features.daily import build_daily, with_partition_date

from .builders import VIN_A, VIN_B, frame, frames_table

DAY = "2026-01-05"
DT = date(2026, 1, 5)

# Four cells, two probes. Frame medians: 3651, 3650, 3602, 3701 (F5 has no valid cell at all).
FRAMES_A = [
    frame(VIN_A, f"{DAY}T01:00:00", current=0.0, voltage=350.0, cells=[3650, 3652, 3654, 3640], probes=[25, 27]),
    frame(VIN_A, f"{DAY}T01:30:00", current=1.5, voltage=352.0, cells=[3650, None, 3652, 3644], probes=[26, None]),
    frame(VIN_A, f"{DAY}T02:00:00", current=100.0, voltage=340.0, cells=[3600, 3606, 3604, 3570], probes=[30, 33],
          flags=0x400 | 0x1),
    frame(VIN_A, f"{DAY}T02:00:10", current=-50.0, voltage=360.0, cells=[3700, 3702, 3706, 3690], probes=[28, 29],
          flags=0x400),
    frame(VIN_A, f"{DAY}T03:00:00", current=None, voltage=350.0, cells=[None, None, None, None], probes=[None, None]),
]


def only_row(table, vin: str = VIN_A) -> dict:
    rows = [r for r in table.to_pylist() if r["vin"] == vin]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture(scope="module")
def result():
    return build_daily(frames_table(FRAMES_A), [DAY])


def test_reference_signals_are_day_means_in_the_reference_units(result) -> None:
    row = only_row(result.daily)
    assert (row["vin"], row["dt"]) == (VIN_A, DT)
    assert row["total_voltage"] == pytest.approx(1752 / 5)  # V, all five frames
    assert row["total_current"] == 12.875  # A, (0 + 1.5 + 100 - 50) / 4: the frame without current is skipped
    assert row["cell_max_voltage"] == pytest.approx(3.6545)  # V: (3654 + 3652 + 3606 + 3706) / 4 mV
    assert row["cell_min_voltage"] == pytest.approx(3.636)  # V: (3640 + 3644 + 3570 + 3690) / 4 mV; null != 0 mV
    assert row["max_temperature"] == 28.75  # °C: (27 + 26 + 33 + 29) / 4
    assert row["min_temperature"] == 27.25  # °C: (25 + 26 + 30 + 28) / 4


def test_cell_range_at_rest_under_load_and_overall(result) -> None:
    row = only_row(result.daily)
    # ranges per frame: 14 (rest), 8 (rest: the null cell is ignored), 36 (load), 16 (load); F5 has none
    assert (row["cell_range_mean_mv"], row["cell_range_max_mv"]) == (18.5, 36.0)
    assert row["cell_range_p95_mv"] == pytest.approx(33.0)  # sorted 8 14 16 36: rank 3.85 -> 16 + 0.85 * 20
    assert (row["cell_range_rest_mean_mv"], row["cell_range_rest_max_mv"]) == (11.0, 14.0)
    assert row["cell_range_rest_p95_mv"] == pytest.approx(13.7)  # 8 + 0.95 * 6
    assert (row["cell_range_load_mean_mv"], row["cell_range_load_max_mv"]) == (26.0, 36.0)
    assert row["cell_range_load_p95_mv"] == pytest.approx(35.0)  # 16 + 0.95 * 20


def test_probe_spread_coverage_and_alarm_label(result) -> None:
    row = only_row(result.daily)
    assert (row["probe_spread_mean_c"], row["probe_spread_max_c"]) == (2.0, 3.0)  # 2, 3, 1; one valid probe: none
    assert (row["cell_count"], row["probe_count"]) == (4, 2)
    assert (row["frame_count"], row["hours_covered"], row["rest_frames"], row["load_frames"]) == (5, 3, 2, 2)
    assert (row["alarm"], row["alarm_frames"]) == (True, 2)  # bit 10 in 0x401 and 0x400


def test_cell_deviations_from_the_frame_median(result) -> None:
    rows = [(r["cell_index"], r["cell_dev_mv"], r["cell_dev_rest_mv"], r["cell_dev_load_mv"], r["valid_frames"])
            for r in result.cell_daily.to_pylist()]
    assert rows == [
        (1, -1.0, -0.5, -1.5, 4),  # -1, 0 at rest; -2, -1 under load
        (2, 2.0, 1.0, 2.5, 3),  # null in F2: three frames
        (3, 3.0, 2.5, 3.5, 4),
        (4, -15.0, -8.5, -21.5, 4),  # -11, -6 at rest; -32, -11 under load
    ]


def test_suspect_cell_of_a_single_day(result) -> None:
    row = only_row(result.daily)
    assert (row["suspect_cell"], row["suspect_cell_dev_mv"]) == (4, -15.0)
    assert (row["suspect_cell_dev_rest_mv"], row["suspect_cell_dev_load_mv"]) == (-8.5, -21.5)
    # deviations -1 2 3 -15: median 0.5, absolute deviations 1.5 1.5 2.5 15.5, mad 2
    assert row["suspect_cell_z"] == pytest.approx((-15 - 0.5) / (1.4826 * 2), rel=1e-12)
    assert (row["suspect_cell_dev_7d_mv"], row["suspect_cell_days_7d"]) == (-15.0, 1)
    assert row["suspect_cell_z_7d"] == pytest.approx(row["suspect_cell_z"], rel=1e-12)


def test_vehicles_and_days_stay_apart_and_only_the_asked_dates_are_computed() -> None:
    rows = FRAMES_A + [
        # same timestamp as A's first frame: medians are per vehicle and frame
        frame(VIN_B, f"{DAY}T01:00:00", current=0.0, cells=[4000, 4010, 4020], probes=[20, 20]),
        frame(VIN_B, "2026-01-06T01:00:00", current=0.0, cells=[4000, 4000, 4000], probes=[20, 20], flags=0x400),
    ]
    daily = build_daily(frames_table(rows), [DAY]).daily
    assert [(r["vin"], r["dt"]) for r in daily.to_pylist()] == [(VIN_B, DT), (VIN_A, DT)]  # ordered by vin
    b = only_row(daily, VIN_B)
    assert (b["cell_range_mean_mv"], b["suspect_cell"], b["suspect_cell_dev_mv"], b["alarm"]) == (20.0, 1, -10.0, False)
    assert b["suspect_cell_z"] == pytest.approx(-10 / (1.4826 * 10), rel=1e-12)  # -10 0 10: median 0, mad 10
    assert only_row(daily, VIN_A)["cell_range_mean_mv"] == 18.5


def test_bit_10_alone_sets_the_label() -> None:
    rows = [frame(VIN_A, f"{DAY}T01:00:00", current=0.0, cells=[3650, 3651], flags=0x3FF | 0x800)]  # every bit but 10
    row = only_row(build_daily(frames_table(rows), [DAY]).daily)
    assert (row["alarm"], row["alarm_frames"]) == (False, 0)


def test_frames_from_parquet_partitions_give_the_same_rows(tmp_path: Path, result) -> None:
    partition = tmp_path / "frames" / f"dt={DAY}"
    partition.mkdir(parents=True)
    pq.write_table(frames_table(FRAMES_A), partition / "upload.parquet")  # like ingest: dt only in the path
    from_parquet = build_daily(tmp_path / "frames", [DAY])
    assert from_parquet.daily.to_pylist() == result.daily.to_pylist()
    assert from_parquet.cell_daily.to_pylist() == result.cell_daily.to_pylist()
    only_the_partition = build_daily([partition], [DAY])  # a list of partitions, as a DAG passes the touched ones
    assert only_the_partition.daily.to_pylist() == result.daily.to_pylist()


def test_partition_date_is_the_utc_date() -> None:
    table = with_partition_date(frames_table([frame(VIN_A, "2026-01-05T23:59:59", current=0.0, cells=[1, 2])]))
    assert table["dt"].to_pylist() == [DT]
