"""pipelines/serving/dashboard/lake_reads.py: per-date caches over a real lake folder, following its objects."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.schema import CELL_DAILY_SCHEMA
from pipelines.serving.dashboard.lake_reads import DailyCounts, LakeViews, PredictionCounts, ZoneListing
from pipelines.storage import daily_zone
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import write_batch

from .builders import (
    ALARM_FROM,
    DRIFTING,
    FIRST,
    FULL_VERSION,
    HEALTHY,
    LAST,
    QUIET,
    QUIET_LAST,
    SUSPECT,
    batch_rows,
    write_daily,
    write_predictions,
)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake((tmp_path / "lake").as_uri())
    write_daily(lake)
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    write_predictions(lake, store)
    store.close()
    return lake


def test_daily_counts_are_vehicles_reporting_and_alarmed_per_day(lake: Lake) -> None:
    views = LakeViews(lake)
    counts = views.daily_counts.get([FIRST, QUIET_LAST + timedelta(days=1), ALARM_FROM, LAST, LAST + timedelta(days=1)])
    assert counts == {FIRST: DailyCounts(3, 0), QUIET_LAST + timedelta(days=1): DailyCounts(2, 0),
                      ALARM_FROM: DailyCounts(2, 1), LAST: DailyCounts(2, 1)}  # no partition, no value


def test_prediction_counts_count_the_newest_batch_row_per_vehicle_and_feature_set(lake: Lake) -> None:
    counts = LakeViews(lake).prediction_counts.get([LAST, LAST + timedelta(days=1)])
    assert counts == {LAST: {"full": PredictionCounts(scored=3, alarms=1)},
                      LAST + timedelta(days=1): {"full": PredictionCounts(scored=3, alarms=2),
                                                 "signals6": PredictionCounts(scored=1, alarms=0)}}


def test_batch_predictions_keep_the_newest_run_and_the_strongest_reason(lake: Lake) -> None:
    day = LAST + timedelta(days=1)
    newer = "20260322t000000z-full-89abcdef"
    rows = batch_rows(day, newer, {DRIFTING: 0.1})
    rows = rows.set_column(rows.column_names.index("created_at"), "created_at",
                           pa.array([r + timedelta(hours=1) for r in rows["created_at"].to_pylist()], rows["created_at"].type))
    write_batch(lake, day, newer, rows)  # a re-run after a promotion, an hour later: its answer counts
    table = LakeViews(lake).batch_predictions.get([day])[day]
    full = {r["vin"]: r for r in table.to_pylist() if r["feature_set"] == "full"}
    assert {vin: (r["model_version"], r["probability"]) for vin, r in full.items()} == {
        DRIFTING: (newer, 0.1), HEALTHY: (FULL_VERSION, 0.2), QUIET: (FULL_VERSION, 0.6)}
    assert (full[DRIFTING]["reason_feature"], full[DRIFTING]["reason_value"], full[DRIFTING]["reason_contribution"]) == (
        "cell_range_max_mv_lag1", 290.0, 1.25)
    assert full[HEALTHY]["reason_feature"] is None


def test_a_changed_partition_is_read_again_and_an_unchanged_one_is_not(lake: Lake, monkeypatch) -> None:
    views = LakeViews(lake, revalidate_seconds=0)
    reads: list[tuple[date, date]] = []
    real = daily_zone.read_daily
    monkeypatch.setattr(daily_zone, "read_daily", lambda lk, first, last: reads.append((first, last)) or real(lk, first, last))
    views.daily_counts.get([FIRST, FIRST + timedelta(days=1), FIRST + timedelta(days=3)])
    assert reads == [(FIRST, FIRST + timedelta(days=1)), (FIRST + timedelta(days=3), FIRST + timedelta(days=3))]
    views.daily_counts.get([FIRST, FIRST + timedelta(days=1)])
    assert len(reads) == 2  # cached
    rows = daily_zone.read_daily(lake, FIRST, FIRST).filter(pa.array([True, False, False]))
    daily_zone.write_computed(lake, FIRST, rows, CELL_DAILY_SCHEMA.empty_table())
    assert views.daily_counts.get([FIRST]) == {FIRST: DailyCounts(1, 0)}
    assert reads[-1] == (FIRST, FIRST)


def test_missing_dates_are_read_in_runs_of_at_most_16_days(lake: Lake, monkeypatch) -> None:
    reads: list[tuple[date, date]] = []
    real = daily_zone.read_daily
    monkeypatch.setattr(daily_zone, "read_daily", lambda lk, first, last: reads.append((first, last)) or real(lk, first, last))
    counts = LakeViews(lake).daily_counts.get(FIRST + timedelta(days=n) for n in range(20))
    assert len(counts) == 20 and reads == [(FIRST, FIRST + timedelta(days=15)), (FIRST + timedelta(days=16), LAST)]


def test_a_zone_is_listed_again_only_after_the_revalidation_time(lake: Lake) -> None:
    now = [100.0]
    listing = ZoneListing(lake, "daily", revalidate_seconds=5, clock=lambda: now[0])
    assert listing.days()[0] == FIRST and len(listing.days()) == 20
    lake.delete(daily_zone.partition_key("daily", FIRST))
    now[0] += 4
    assert listing.days()[0] == FIRST
    now[0] += 1
    assert listing.days()[0] == FIRST + timedelta(days=1)


def test_the_least_recently_used_dates_leave_a_full_cache(lake: Lake) -> None:
    views = LakeViews(lake, max_daily_dates=3)
    views.daily_rows.get([FIRST, FIRST + timedelta(days=1), FIRST + timedelta(days=2)])
    views.daily_rows.get([FIRST])
    views.daily_rows.get([LAST])
    assert list(views.daily_rows._values) == [FIRST + timedelta(days=2), FIRST, LAST]


def test_a_vehicles_daily_columns_and_cell_rows_are_its_own(lake: Lake) -> None:
    views = LakeViews(lake)
    days = [LAST - timedelta(days=1), LAST]
    rows = views.daily_for(days, DRIFTING).to_pylist()
    assert [(r["dt"], r["cell_range_max_mv"], r["alarm"], r["suspect_cell"]) for r in rows] == [
        (LAST - timedelta(days=1), 280.0, True, SUSPECT[DRIFTING]), (LAST, 290.0, True, SUSPECT[DRIFTING])]
    assert views.daily_for(days, QUIET).num_rows == 0 and views.daily_for([date(2027, 1, 1)]).num_rows == 0
    cells = views.cell_rows(DRIFTING, days, "load").to_pylist()
    assert len(cells) == 16 and {r["dt"] for r in cells} == set(days)
    suspect = [r["value"] for r in cells if r["cell_index"] == SUSPECT[DRIFTING]]
    assert suspect == [-54.0, -57.0]  # 1.5 × (−2 mV × 18 and 19 days)
    assert views.cell_rows(DRIFTING, days, "load") is views.cell_rows(DRIFTING, days, "load")  # kept
    assert views.cell_rows("LSVDSH00000000009", days).num_rows == 0


def test_cell_rows_are_read_through_the_daily_zone_with_the_vehicles_filter(lake: Lake, monkeypatch) -> None:
    reads: list[tuple] = []
    real = daily_zone.read_cell_daily

    def spy(lk, first, last, vins=None, columns=None):
        reads.append((first, last, vins, columns))
        return real(lk, first, last, vins=vins, columns=columns)

    monkeypatch.setattr(daily_zone, "read_cell_daily", spy)
    views = LakeViews(lake)
    days = [LAST - timedelta(days=4), LAST - timedelta(days=2), LAST, LAST + timedelta(days=1)]  # gaps; 03-21 has none
    cells = views.cell_rows(DRIFTING, days, "rest")
    assert reads == [(LAST - timedelta(days=4), LAST, [DRIFTING], ["dt", "cell_index", "cell_dev_rest_mv"])]
    assert sorted({r["dt"] for r in cells.to_pylist()}) == days[:3]  # the dates between were read, then left out
    assert [r["value"] for r in cells.to_pylist() if r["cell_index"] == SUSPECT[DRIFTING]] == [-15.0, -17.0, -19.0]
    kinds = [("dt", pa.date32()), ("cell_index", pa.int32()), ("value", pa.float64())]
    assert [(f.name, f.type) for f in cells.schema] == kinds
    assert views.cell_rows(QUIET, [LAST]).num_rows == 0 and len(reads) == 2  # stopped reporting: read, nothing found
    nothing = views.cell_rows(DRIFTING, [LAST + timedelta(days=5)])  # no partition: nothing to read
    assert nothing.num_rows == 0 and [(f.name, f.type) for f in nothing.schema] == kinds and len(reads) == 2
