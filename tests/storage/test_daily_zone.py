"""The daily and cell_daily zones: one object per date and source, computed rows winning over imported ones."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.storage import daily_zone
from pipelines.storage.catalog import build_catalog, connect_read_only
from pipelines.storage.lake import Lake

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
DAY = date(2026, 1, 5)


def daily_rows(*rows: tuple[str, date, float]) -> pa.Table:
    """Daily rows with only vin, dt and total_voltage set."""
    return pa.Table.from_pylist([{"vin": v, "dt": d, "total_voltage": volts} for v, d, volts in rows], DAILY_SCHEMA)


def cell_rows(vin: str, day: date, deviations: list[float]) -> pa.Table:
    return pa.Table.from_pylist([{"vin": vin, "dt": day, "cell_index": i, "cell_dev_mv": dev}
                                 for i, dev in enumerate(deviations, 1)], CELL_DAILY_SCHEMA)


def test_computed_rows_land_in_their_date_partition_and_read_back(lake: Lake) -> None:
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 350.0)), cell_rows(VIN_A, DAY, [1.0, -2.0]))
    assert lake.exists("daily/dt=2026-01-05/frames.parquet") and lake.exists("cell_daily/dt=2026-01-05/frames.parquet")
    assert daily_zone.read_daily(lake).to_pylist()[0]["total_voltage"] == 350.0
    assert daily_zone.read_cell_daily(lake)["cell_dev_mv"].to_pylist() == [1.0, -2.0]
    assert daily_zone.computed_days(lake) == [DAY]


def test_rewriting_a_date_replaces_it_and_an_empty_date_deletes_it(lake: Lake) -> None:
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 350.0)), cell_rows(VIN_A, DAY, [1.0]))
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 351.0)), cell_rows(VIN_A, DAY, [2.0]))
    assert daily_zone.read_daily(lake)["total_voltage"].to_pylist() == [351.0]
    daily_zone.write_computed(lake, DAY, DAILY_SCHEMA.empty_table(), CELL_DAILY_SCHEMA.empty_table())
    assert daily_zone.read_daily(lake).num_rows == 0 and daily_zone.computed_days(lake) == []


def test_a_computed_row_wins_over_an_imported_one_for_the_same_vehicle_day(lake: Lake) -> None:
    daily_zone.write_imported(lake, DAY, daily_rows((VIN_A, DAY, 1.0), (VIN_B, DAY, 2.0)), "abc123")
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 350.0)), CELL_DAILY_SCHEMA.empty_table())
    rows = {r["vin"]: r["total_voltage"] for r in daily_zone.read_daily(lake).to_pylist()}
    assert rows == {VIN_A: 350.0, VIN_B: 2.0}
    assert daily_zone.daily_keys(lake) == {(VIN_A, DAY), (VIN_B, DAY)}


def test_the_catalog_view_applies_the_same_precedence(lake: Lake, tmp_path: Path) -> None:
    daily_zone.write_imported(lake, DAY, daily_rows((VIN_A, DAY, 1.0), (VIN_B, DAY, 2.0)), "abc123")
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 350.0)), cell_rows(VIN_A, DAY, [1.0]))
    catalog = build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(catalog) as con:
        assert con.sql("select vin, total_voltage from daily order by vin").fetchall() == [(VIN_B, 2.0), (VIN_A, 350.0)]
        assert con.sql("select count(*) from cell_daily").fetchall() == [(1,)]


def test_reading_a_date_range_leaves_out_other_dates(lake: Lake) -> None:
    for day in (date(2026, 1, 4), DAY, date(2026, 1, 6)):
        daily_zone.write_computed(lake, day, daily_rows((VIN_A, day, 1.0)), cell_rows(VIN_A, day, [0.0]))
    assert daily_zone.read_daily(lake, DAY, DAY)["dt"].to_pylist() == [DAY]
    assert daily_zone.read_cell_daily(lake, DAY)["dt"].to_pylist() == [DAY, date(2026, 1, 6)]


def test_rows_missing_a_contract_column_are_refused(lake: Lake) -> None:
    with pytest.raises(ValueError, match="alarm"):
        daily_zone.write_imported(lake, DAY, daily_rows((VIN_A, DAY, 1.0)).drop_columns(["alarm"]), "x")


def test_frame_locations_name_only_dates_with_frames(lake: Lake) -> None:
    lake.write_bytes("frames/dt=2026-01-05/a.parquet", b"x")
    lake.write_bytes("frames/dt=2026-01-07/b.parquet", b"x")
    locations = daily_zone.frame_locations(lake, [date(2026, 1, 5), date(2026, 1, 6)])
    assert locations == [lake.path("frames/dt=2026-01-05") + "/*.parquet"]
    assert daily_zone.frame_days(lake) == [date(2026, 1, 5), date(2026, 1, 7)]
