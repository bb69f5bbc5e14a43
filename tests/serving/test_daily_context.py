"""pipelines/serving/daily_context.py: the API's in-memory suspects and windows per as_of date, on a real lake."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pyarrow as pa
import pytest
from training.daily_builders import FIRST_DAY, write_synthetic_daily

from pipelines.features.windows import inference_windows
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.serving import daily_context
from pipelines.serving.daily_context import DailyContext, context_days, latest_suspects
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake

AS_OF = FIRST_DAY + timedelta(days=30)
NEW_VIN = "LSVNEW00000000001"


def name_suspect(lake: Lake, day: date, vin: str, cell: int | None) -> None:
    """Rewrite one day's computed object with a suspect cell on one vehicle."""
    rows = daily_zone.read_daily(lake, day, day)
    cells = [cell if v == vin else s for v, s in zip(rows["vin"].to_pylist(), rows["suspect_cell"].to_pylist(),
                                                      strict=True)]
    rows = rows.set_column(rows.column_names.index("suspect_cell"), "suspect_cell", pa.array(cells, pa.int32()))
    daily_zone.write_computed(lake, day, rows, CELL_DAILY_SCHEMA.empty_table())


def add_vehicle(lake: Lake, day: date, vin: str) -> None:
    """A vehicle's first daily row, landing on `day`."""
    rows = daily_zone.read_daily(lake, day, day)
    first = rows.slice(0, 1).to_pylist()[0]
    daily_zone.write_computed(lake, day, pa.concat_tables([rows, pa.Table.from_pylist([{**first, "vin": vin}],
                                                                                        DAILY_SCHEMA)]),
                              CELL_DAILY_SCHEMA.empty_table())


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path.as_uri())
    write_synthetic_daily(lake, vehicles=6, days=40)
    return lake


def test_context_days_are_the_14_days_before_as_of() -> None:
    assert context_days(date(2026, 3, 1)) == (date(2026, 2, 15), date(2026, 2, 28))


def test_latest_suspects_keeps_each_vehicles_latest_named_cell() -> None:
    daily = pa.table({"vin": ["A", "A", "A", "B", "C"],
                      "dt": [date(2026, 1, 3), date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 1), date(2026, 1, 1)],
                      "suspect_cell": pa.array([None, 5, 9, 2, None], pa.int32())})
    assert latest_suspects(daily) == {"A": 9, "B": 2}  # A's latest day names none: its latest named one counts


def test_suspects_come_from_the_context_days_only(lake) -> None:
    vin = "LSVSYN00000000001"
    name_suspect(lake, AS_OF - timedelta(days=3), vin, 17)
    name_suspect(lake, AS_OF, vin, 42)  # as_of itself is not a context day
    assert DailyContext(lake).suspects(AS_OF) == {vin: 17}


def test_a_window_is_the_row_inference_windows_builds_for_the_fleet(lake) -> None:
    vin = "LSVSYN00000000002"
    window = DailyContext(lake).window(AS_OF, vin)
    first, last = context_days(AS_OF)
    expected = inference_windows(daily_zone.read_daily(lake, first, last), [AS_OF])
    row = expected["vin"].to_pylist().index(vin)
    assert window.num_rows == 1
    assert window.to_pylist() == expected.slice(row, 1).to_pylist()


def test_a_vehicle_without_context_rows_has_no_window(lake) -> None:
    assert DailyContext(lake).window(AS_OF, "LSVZZZ00000000099") is None
    assert DailyContext(lake).window(FIRST_DAY, "LSVSYN00000000001") is None  # nothing before the first day


def test_changed_daily_objects_are_seen_after_the_revalidation_interval(lake) -> None:
    vin = "LSVSYN00000000003"
    context = DailyContext(lake, revalidate_seconds=3600)
    assert context.suspects(AS_OF) == {}
    name_suspect(lake, AS_OF - timedelta(days=1), vin, 5)
    assert context.suspects(AS_OF) == {}  # within the interval the listing is not repeated
    context.revalidate_seconds = 0
    assert context.suspects(AS_OF) == {vin: 5}


def test_a_missing_vehicle_makes_the_context_look_again_at_once(lake) -> None:
    context = DailyContext(lake, revalidate_seconds=3600)
    assert context.window(AS_OF, "LSVSYN00000000001") is not None
    add_vehicle(lake, AS_OF - timedelta(days=2), NEW_VIN)
    window = context.window(AS_OF, NEW_VIN)
    assert window is not None and window["vin"].to_pylist() == [NEW_VIN]


def test_unchanged_dates_are_read_once_even_under_concurrent_requests(lake, monkeypatch) -> None:
    reads = []
    real_read = daily_zone.read_daily

    def counting_read(*args, **kwargs):
        reads.append(args[1:3])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(daily_context.daily_zone, "read_daily", counting_read)
    context = DailyContext(lake, revalidate_seconds=3600)
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        context.suspects(AS_OF)
        context.window(AS_OF, "LSVSYN00000000001")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 2  # one read for the suspects, one for the fleet's windows


def test_only_the_most_recent_dates_are_held(lake) -> None:
    context = DailyContext(lake, max_dates=2, max_window_dates=1)
    days = [AS_OF, AS_OF + timedelta(days=1), AS_OF + timedelta(days=2)]
    for day in days:
        assert context.window(day, "LSVSYN00000000001") is not None
    held = dict(context._entries)
    assert list(held) == days[1:]  # the oldest date went
    assert [day for day, entry in held.items() if entry.windows is not None] == [days[2]]
