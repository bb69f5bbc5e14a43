"""sql/marts/fleet_daily.sql on hand-built daily rows."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines.features.marts import fleet_daily

from .builders import VIN_A, VIN_B, VIN_C, daily_row, daily_table


def test_fleet_figures_per_day() -> None:
    daily = daily_table([
        daily_row(VIN_A, "2026-01-05", frame_count=100, hours_covered=24, alarm=True, alarm_frames=5,
                  cell_range_mean_mv=10.0, cell_range_max_mv=15.0, probe_spread_mean_c=1.0, suspect_cell_z_7d=-4.0),
        daily_row(VIN_B, "2026-01-05", frame_count=200, hours_covered=12, cell_range_mean_mv=20.0,
                  cell_range_max_mv=30.0, probe_spread_mean_c=2.0, suspect_cell_z_7d=1.0),
        daily_row(VIN_C, "2026-01-05", frame_count=300, hours_covered=6, cell_range_mean_mv=40.0,
                  cell_range_max_mv=60.0, probe_spread_mean_c=3.0, suspect_cell_z_7d=None),
        daily_row(VIN_A, "2026-01-06", frame_count=7, hours_covered=1, cell_range_mean_mv=None, cell_range_max_mv=None,
                  suspect_cell_z_7d=3.5),
    ])
    first, second = fleet_daily(daily).to_pylist()
    assert first["dt"] == date(2026, 1, 5)
    assert (first["vehicles_reporting"], first["frames"], first["hours_covered_mean"]) == (3, 600, 14.0)
    assert (first["vehicles_in_alarm"], first["alarm_frames"]) == (1, 5)
    assert first["alarm_share"] == pytest.approx(1 / 3, rel=1e-12)
    assert first["cell_range_mean_mv"] == pytest.approx(70 / 3, rel=1e-12)
    assert first["cell_range_p95_mv"] == pytest.approx(38.0, rel=1e-12)  # 10 20 40: rank 2.9 -> 20 + 0.9 * 20
    assert (first["cell_range_max_mv"], first["probe_spread_mean_c"], first["vehicles_with_outlier_cell"]) == (60.0, 2.0, 1)
    assert (second["vehicles_reporting"], second["frames"], second["vehicles_in_alarm"]) == (1, 7, 0)
    assert (second["cell_range_mean_mv"], second["cell_range_p95_mv"]) == (None, None)
    assert second["vehicles_with_outlier_cell"] == 1  # |z| >= 3.5
