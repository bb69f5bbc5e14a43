"""The daily and cell_daily zones: one object per date and source, computed rows winning over imported ones."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
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


def fleet_cell_rows(day: date, vehicles: int = 600, cells: int = 120) -> pa.Table:
    """Every vehicle's cells on one day, vehicles in a shuffled order: more rows than one row group holds."""
    order = np.random.default_rng(5).permutation(vehicles)
    vins = np.repeat([f"LSVAB{n:012d}" for n in order], cells)
    return pa.table({"vin": vins, "dt": pa.array([day] * len(vins), pa.date32()),
                     "cell_index": pa.array(np.tile(np.arange(1, cells + 1), vehicles), pa.int32()),
                     "cell_dev_mv": np.repeat(order.astype(float), cells), "cell_dev_rest_mv": pa.nulls(len(vins)),
                     "cell_dev_load_mv": pa.nulls(len(vins)), "valid_frames": pa.nulls(len(vins))}).cast(CELL_DAILY_SCHEMA)


def fleet_daily_rows(day: date, vehicles: int) -> pa.Table:
    """One daily row per vehicle (vin and dt only), in reverse vin order."""
    columns = {"vin": [f"LSVAB{n:012d}" for n in reversed(range(vehicles))], "dt": pa.array([day] * vehicles, pa.date32())}
    return pa.table({f.name: columns.get(f.name, pa.nulls(vehicles, f.type)) for f in DAILY_SCHEMA}, DAILY_SCHEMA)


def test_computed_objects_are_sorted_by_vin_in_row_groups_of_at_most_65536_rows(lake: Lake) -> None:
    daily_zone.write_computed(lake, DAY, fleet_daily_rows(DAY, 70_000), fleet_cell_rows(DAY))
    cells = pq.ParquetFile(lake.path("cell_daily/dt=2026-01-05/frames.parquet")).metadata
    assert [cells.row_group(i).num_rows for i in range(cells.num_row_groups)] == [65_536, 72_000 - 65_536]
    vin_stats = [cells.row_group(i).column(0).statistics for i in range(cells.num_row_groups)]
    # sorted: the vin ranges meet at one vehicle (cells 1-16 of LSVAB…546 end the first group), never overlap
    assert (vin_stats[0].min, vin_stats[0].max, vin_stats[1].min, vin_stats[1].max) == (
        "LSVAB000000000000", "LSVAB000000000546", "LSVAB000000000546", "LSVAB000000000599")
    daily = pq.ParquetFile(lake.path("daily/dt=2026-01-05/frames.parquet")).metadata
    assert [daily.row_group(i).num_rows for i in range(daily.num_row_groups)] == [65_536, 70_000 - 65_536]
    table = daily_zone.read_cell_daily(lake)
    assert table["vin"].to_pylist() == sorted(table["vin"].to_pylist())
    assert table.slice(0, 3).select(["vin", "cell_index"]).to_pylist() == [
        {"vin": "LSVAB000000000000", "cell_index": i} for i in (1, 2, 3)]


def test_a_vin_filter_reads_exactly_that_vehicles_rows_and_skips_other_row_groups(lake: Lake) -> None:
    for day in (DAY, date(2026, 1, 6)):
        daily_zone.write_computed(lake, day, daily_rows((VIN_A, day, 1.0)), fleet_cell_rows(day))
    wanted = "LSVAB000000000599"  # the last vehicle: its rows sit in the second row group of each day
    rows = daily_zone.read_cell_daily(lake, vins=[wanted], columns=["vin", "dt", "cell_index", "cell_dev_mv"])
    assert rows.column_names == ["vin", "dt", "cell_index", "cell_dev_mv"] and rows.num_rows == 2 * 120
    assert set(rows["vin"].to_pylist()) == {wanted} and set(rows["cell_dev_mv"].to_pylist()) == {599.0}
    assert rows.filter(pc.equal(rows["dt"], DAY))["cell_index"].to_pylist() == list(range(1, 121))
    two = daily_zone.read_cell_daily(lake, DAY, DAY, vins=[wanted, "LSVAB000000000007"])
    assert two.num_rows == 240 and sorted(set(two["vin"].to_pylist())) == ["LSVAB000000000007", wanted]
    assert daily_zone.read_cell_daily(lake, vins=[]).num_rows == 0
    assert daily_zone.read_cell_daily(lake, vins=["LSVAB000000000600"]).num_rows == 0
    # The row-group statistics alone rule out the first row group: only the second is read.
    fragment = next(ds.dataset(lake.path("cell_daily/dt=2026-01-05/frames.parquet"), format="parquet").get_fragments())
    picked = fragment.split_by_row_group(pc.field("vin").isin([wanted]))
    assert [group.id for piece in picked for group in piece.row_groups] == [1]


def test_a_vin_filter_or_column_list_of_the_wrong_kind_is_a_clear_error(lake: Lake) -> None:
    with pytest.raises(ValueError, match=r"vins: expected a list of VINs, got the string 'LSVAB1234CD567890'"):
        daily_zone.read_cell_daily(lake, vins=VIN_A)
    with pytest.raises(ValueError, match=r"\['cell_mv'\] are not cell_daily columns"):
        daily_zone.read_cell_daily(lake, columns=["dt", "cell_mv"])


def test_writing_the_same_rows_again_gives_the_same_bytes_in_any_input_order(lake: Lake) -> None:
    cells = fleet_cell_rows(DAY)
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 1.0)), cells)
    first = lake.read_bytes("cell_daily/dt=2026-01-05/frames.parquet")
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 1.0)), cells)
    assert lake.read_bytes("cell_daily/dt=2026-01-05/frames.parquet") == first
    reversed_rows = cells.take(pa.array(range(cells.num_rows - 1, -1, -1)))
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 1.0)), reversed_rows)
    assert lake.read_bytes("cell_daily/dt=2026-01-05/frames.parquet") == first
    already_sorted = daily_zone.read_cell_daily(lake)  # sorted rows are written as they come
    daily_zone.write_computed(lake, DAY, daily_rows((VIN_A, DAY, 1.0)), already_sorted)
    assert lake.read_bytes("cell_daily/dt=2026-01-05/frames.parquet") == first


def test_rows_missing_a_contract_column_are_refused(lake: Lake) -> None:
    with pytest.raises(ValueError, match="alarm"):
        daily_zone.write_imported(lake, DAY, daily_rows((VIN_A, DAY, 1.0)).drop_columns(["alarm"]), "x")


def test_frame_locations_name_only_dates_with_frames(lake: Lake) -> None:
    lake.write_bytes("frames/dt=2026-01-05/a.parquet", b"x")
    lake.write_bytes("frames/dt=2026-01-07/b.parquet", b"x")
    locations = daily_zone.frame_locations(lake, [date(2026, 1, 5), date(2026, 1, 6)])
    assert locations == [lake.path("frames/dt=2026-01-05") + "/*.parquet"]
    assert daily_zone.frame_days(lake) == [date(2026, 1, 5), date(2026, 1, 7)]


def test_a_computed_day_holds_one_row_per_vehicle(tmp_path) -> None:
    lake = Lake(tmp_path.as_uri())
    row = {"vin": "LSVAB1234CD567890", "dt": date(2026, 3, 1), "alarm": False}
    with pytest.raises(ValueError, match="daily rows of 2026-03-01 repeat a vehicle"):
        daily_zone.write_computed(lake, date(2026, 3, 1), pa.Table.from_pylist([row, row], DAILY_SCHEMA),
                                  CELL_DAILY_SCHEMA.empty_table())


def test_unordered_reads_hold_the_same_rows(tmp_path) -> None:
    lake = Lake(tmp_path.as_uri())
    for day, endings in ((date(2026, 3, 1), "10"), (date(2026, 3, 2), "02")):
        rows = [{"vin": f"LSVAB1234CD56789{end}", "dt": day, "alarm": False} for end in endings]
        daily_zone.write_computed(lake, day, pa.Table.from_pylist(rows, DAILY_SCHEMA), CELL_DAILY_SCHEMA.empty_table())
    ordered = daily_zone.read_daily(lake)
    loose = daily_zone.read_daily(lake, ordered=False)
    assert loose.sort_by([("vin", "ascending"), ("dt", "ascending")]).equals(ordered)
    assert ordered.num_rows == 4
