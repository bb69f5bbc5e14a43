"""Recompute the `daily` zone for touched dates: frames of those dates in, one daily and cell object per date out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import load_settings
from pipelines.features.daily import SUSPECT_TRAILING_DAYS, as_dates, build_daily
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake

log = logging.getLogger(__name__)

CHUNK_DAYS = 7  # dates per query: bounds memory, and each chunk's cell rows are the next chunk's history


@dataclass
class DailyRunSummary:
    """What one features run did."""

    requested: list[str]
    computed: list[str] = field(default_factory=list)  # dates recomputed (requested plus the trailing dates they feed)
    without_frames: list[str] = field(default_factory=list)
    daily_rows: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def dates_to_recompute(touched: Iterable[date], days_with_frames: Iterable[date]) -> list[date]:
    """Touched dates plus the following six that have frames: their suspect cell's 7-day mean reads the touched date."""
    with_frames = set(days_with_frames)
    touched = set(touched)
    following = {d + timedelta(days=k) for d in touched for k in range(1, SUSPECT_TRAILING_DAYS)}
    return sorted(touched | (following & with_frames))


def pending_dates(lake: Lake) -> list[date]:
    """Dates with frames but no computed daily rows yet (what a run without touched dates catches up on)."""
    return sorted(set(daily_zone.frame_days(lake)) - set(daily_zone.computed_days(lake)))


def _chunks(days: list[date], size: int) -> list[list[date]]:
    return [days[i:i + size] for i in range(0, len(days), size)]


def compute_daily(days: Iterable[date | str] | None = None, lake: Lake | None = None, chunk_days: int = CHUNK_DAYS,
                  progress: Callable[[str], None] | None = None, run_id: str | None = None) -> DailyRunSummary:
    """Recompute daily rows for `days` (default: dates with frames but no daily rows) and the dates they feed.

    The backend's engine runs the queries: DuckDB in process (local), or Athena (aws, see athena_runner.py), which
    names its temporary table and staging prefix after `run_id` (an Airflow run's id; one is made up if None)."""
    started = time.perf_counter()
    settings = load_settings()
    lake = lake or Lake.from_settings(settings)
    requested = as_dates(days) if days is not None else pending_dates(lake)
    summary = DailyRunSummary(requested=[d.isoformat() for d in requested])
    with_frames = daily_zone.frame_days(lake)
    todo = dates_to_recompute(requested, with_frames)
    with_frames_set = set(with_frames)
    summary.without_frames = [d.isoformat() for d in todo if d not in with_frames_set]
    chunks = _chunks(todo, chunk_days)
    athena = None
    if settings.backend == "aws":
        from pipelines.features.athena_runner import AthenaDailyFeatures

        athena = AthenaDailyFeatures(settings, lake, run_id)
    for number, chunk in enumerate(chunks, 1):
        # Oldest first: a chunk's cell rows are on disk before the next chunk reads them as history.
        if athena is not None:
            summary.daily_rows += athena.compute_chunk(chunk, with_frames_set)
        else:
            summary.daily_rows += _compute_chunk_on_duckdb(lake, chunk)
        summary.computed += [d.isoformat() for d in chunk]
        message = f"daily features: chunk {number}/{len(chunks)} ({chunk[0]} … {chunk[-1]}), {summary.daily_rows:,} rows so far"
        (progress or log.info)(message)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _compute_chunk_on_duckdb(lake: Lake, chunk: list[date]) -> int:
    """Recompute one chunk's daily and cell rows in process and replace them in the lake; the daily row count."""
    history = daily_zone.read_cell_daily(lake, chunk[0] - timedelta(days=SUSPECT_TRAILING_DAYS - 1), chunk[-1])
    locations = daily_zone.frame_locations(lake, chunk)
    features = build_daily(locations, chunk, history) if locations else None
    rows = 0
    for day in chunk:
        daily = _rows_of(features.daily, day) if features else DAILY_SCHEMA.empty_table()
        cells = _rows_of(features.cell_daily, day) if features else CELL_DAILY_SCHEMA.empty_table()
        rows += daily_zone.write_computed(lake, day, daily, cells)
    return rows


def _rows_of(table: pa.Table, day: date) -> pa.Table:
    return table.filter(pc.equal(table["dt"], pa.scalar(day, pa.date32())))
