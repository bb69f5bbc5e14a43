"""Daily rows from frames: per-cell deviations, the suspect cell with its trailing history, then the daily contract."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.runner import Relation, run_sql

SUSPECT_TRAILING_DAYS = 7  # sql/features/suspect_cells.sql averages dt - 6 ... dt


class DailyFeatures(NamedTuple):
    daily: pa.Table  # one row per vin and dt (sql/features/daily_features.sql)
    cell_daily: pa.Table  # one row per vin, dt and cell for the computed dates: keep it as the next run's history


def as_dates(days: Iterable[date | str]) -> list[date]:
    """Dates from date objects or 'YYYY-MM-DD' strings, sorted and unique."""
    return sorted({d if isinstance(d, date) else date.fromisoformat(d) for d in days})


def date_table(days: Iterable[date | str], column: str = "dt") -> pa.Table:
    """The one-column relation the queries take their dates from (`dates(dt)`, `as_of_dates(as_of)`)."""
    return pa.table({column: pa.array(as_dates(days), pa.date32())})


def with_partition_date(frames: pa.Table | pd.DataFrame) -> pa.Table:
    """Frames as the queries read them: the frame contract plus `dt`, the UTC date of `ts` (the lake's partition)."""
    table = pa.Table.from_pandas(frames, preserve_index=False) if isinstance(frames, pd.DataFrame) else frames
    if "dt" in table.column_names:
        return table
    utc = pc.cast(table["ts"], pa.timestamp("ms", tz="UTC"))
    return table.append_column("dt", pc.cast(utc, pa.date32()))


def _frames_relation(frames: Relation) -> Relation:
    return with_partition_date(frames) if isinstance(frames, pa.Table | pd.DataFrame) else frames


def trailing_history(history: pa.Table | None, computed: pa.Table, days: list[date]) -> pa.Table:
    """Computed cell rows plus the history rows the trailing window needs (history rows of recomputed days dropped)."""
    if history is None or history.num_rows == 0:
        return computed
    earliest = days[0] - timedelta(days=SUSPECT_TRAILING_DAYS - 1)
    history = history.select(computed.column_names).cast(computed.schema)
    keep = pc.and_(pc.greater_equal(history["dt"], pa.scalar(earliest, pa.date32())),
                   pc.invert(pc.is_in(history["dt"], value_set=pa.array(days, pa.date32()))))
    return pa.concat_tables([history.filter(keep), computed])


def build_daily(frames: Relation, days: Iterable[date | str], cell_daily_history: pa.Table | None = None) -> DailyFeatures:
    """The daily rows of `days` from frames; `cell_daily_history` (earlier cell rows) feeds the suspect's 7-day mean."""
    days = as_dates(days)
    dates = date_table(days)
    frames = _frames_relation(frames)
    cell_daily = run_sql("features/cell_daily", frames=frames, dates=dates)
    suspects = run_sql("features/suspect_cells", cell_daily=trailing_history(cell_daily_history, cell_daily, days),
                       dates=dates)
    daily = run_sql("features/daily_features", frames=frames, dates=dates, suspect_cells=suspects)
    return DailyFeatures(daily=daily, cell_daily=cell_daily)
