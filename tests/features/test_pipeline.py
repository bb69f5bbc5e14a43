"""compute_daily: the daily zone recomputed for touched dates from the frames in the lake, idempotently."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines.features.pipeline import compute_daily, dates_to_recompute, pending_dates
from pipelines.schema import FRAME_PARQUET_OPTIONS
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake

from .builders import VIN_A, VIN_B, frame, frames_table

FIRST = date(2026, 1, 1)


def day(offset: int) -> date:
    return FIRST + timedelta(days=offset)


def write_frames(lake: Lake, offset: int, low_cell_mv: int) -> None:
    """Two frames of VIN_A (cell 2 sits low_cell_mv below the others) and one of VIN_B on day `offset`."""
    stamp = day(offset).isoformat()
    rows = [frame(VIN_A, f"{stamp}T08:00:00", current=0.5, cells=[3700, 3700 - low_cell_mv, 3700, 3701]),
            frame(VIN_A, f"{stamp}T09:00:00", current=20.0, cells=[3690, 3690 - low_cell_mv, 3690, None]),
            frame(VIN_B, f"{stamp}T10:00:00", current=0.0, cells=[3600, 3600, 3601])]
    lake.write_parquet(f"frames/dt={stamp}/upload-{offset}.parquet", frames_table(rows), FRAME_PARQUET_OPTIONS)


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake((tmp_path / "lake").as_uri())
    for offset in range(4):
        write_frames(lake, offset, low_cell_mv=10 * (offset + 1))
    return lake


def test_dates_feeding_a_trailing_mean_are_recomputed_with_the_touched_date() -> None:
    with_frames = [day(i) for i in range(12)]
    assert dates_to_recompute([day(3)], with_frames) == [day(i) for i in range(3, 10)]
    assert dates_to_recompute([day(10)], with_frames) == [day(10), day(11)]
    assert dates_to_recompute([day(20)], with_frames) == [day(20)]


def test_a_run_without_dates_computes_every_date_that_has_frames(lake: Lake) -> None:
    summary = compute_daily(lake=lake)
    assert summary.computed == [day(i).isoformat() for i in range(4)] and summary.daily_rows == 8
    assert pending_dates(lake) == []
    daily = {(r["vin"], r["dt"]): r for r in daily_zone.read_daily(lake).to_pylist()}
    last = daily[(VIN_A, day(3))]
    # cell 2 is 40 mV low on day 3 (median of 3700, 3660, 3700, 3701 is 3700; of 3690, 3650, 3690 is 3690)
    assert (last["suspect_cell"], last["suspect_cell_dev_mv"]) == (2, -40.0)
    assert (last["suspect_cell_dev_7d_mv"], last["suspect_cell_days_7d"]) == (-25.0, 4)
    assert last["frame_count"] == 2 and daily[(VIN_B, day(3))]["frame_count"] == 1


def test_dates_computed_in_separate_runs_equal_one_run_over_all(lake: Lake, tmp_path) -> None:
    compute_daily([day(0), day(1)], lake=lake)
    compute_daily([day(2), day(3)], lake=lake, chunk_days=1)
    separate = daily_zone.read_daily(lake)

    together = Lake((tmp_path / "together").as_uri())
    for offset in range(4):
        write_frames(together, offset, low_cell_mv=10 * (offset + 1))
    compute_daily(lake=together)
    assert separate.equals(daily_zone.read_daily(together))


def test_late_frames_for_an_old_date_refresh_the_days_whose_trailing_mean_reads_it(lake: Lake) -> None:
    compute_daily(lake=lake)
    write_frames(lake, 0, low_cell_mv=50)  # a re-delivery for day 0 with a larger deviation
    summary = compute_daily([day(0)], lake=lake)
    assert summary.computed == [day(i).isoformat() for i in range(4)]
    last = {(r["vin"], r["dt"]): r for r in daily_zone.read_daily(lake).to_pylist()}[(VIN_A, day(3))]
    assert last["suspect_cell_dev_7d_mv"] == pytest.approx((-50 - 20 - 30 - 40) / 4)


def test_rerunning_writes_identical_objects(lake: Lake) -> None:
    compute_daily(lake=lake)
    before = {i.key: lake.read_bytes(i.key) for i in lake.list("daily") + lake.list("cell_daily")}
    compute_daily([day(i) for i in range(4)], lake=lake)
    after = {i.key: lake.read_bytes(i.key) for i in lake.list("daily") + lake.list("cell_daily")}
    assert before == after and len(before) == 8


def test_a_date_without_frames_is_reported_and_leaves_nothing_behind(lake: Lake) -> None:
    summary = compute_daily([day(30)], lake=lake)
    assert summary.without_frames == [day(30).isoformat()] and summary.daily_rows == 0
    assert not lake.list("daily/dt=2026-01-31")
