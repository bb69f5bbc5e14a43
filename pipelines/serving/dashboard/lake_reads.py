"""What the dashboard reads from the lake, held in small in-process caches that follow the lake objects.

Every view is built from date partitions (`daily/dt=D/`, `cell_daily/dt=D/`, `predictions/dt=D/`), so everything
cached is per partition: a value derived from one date stays valid while that date's objects are the same ones
(key, size, modification stamp) and is derived again when one changes. A zone is listed at most once every
`revalidate_seconds`. Reads go through pipelines/storage (`read_daily`, `read_predictions`, `read_cell_daily`), a
missing run of dates in one call. What is kept is small per date: counts for the fleet timeline (any number of
dates), a few columns per vehicle for the fleet table and the vehicle trend (`max_daily_dates`), each vehicle's
newest batch prediction (`max_prediction_dates`). Per-cell rows are never cached for the fleet: a vehicle's are
read with a filter on its VIN (which skips the other vehicles' row groups) and kept for the last few vehicles
looked at.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA, PREDICTION_SCHEMA
from pipelines.storage import daily_zone, predictions_zone
from pipelines.storage.lake import Lake

Fingerprint = tuple[tuple[str, int, int], ...]
T = TypeVar("T")

DAILY_COLUMNS = ["vin", "dt", "alarm", "cell_range_max_mv", "cell_range_p95_mv", "cell_range_mean_mv",
                 "suspect_cell", "suspect_cell_dev_mv"]
# A batch prediction as the fleet table shows it: the contract's columns but `reasons`, whose strongest is split out.
NEWEST_PREDICTION_SCHEMA = pa.schema(
    [PREDICTION_SCHEMA.field(name) for name in ("vin", "as_of", "feature_set", "model_version", "probability", "alarm",
                                                "threshold", "suspect_cell")]
    + [pa.field("reason_feature", pa.string()), pa.field("reason_value", pa.float64()),
       pa.field("reason_contribution", pa.float64()), PREDICTION_SCHEMA.field("created_at")])
CELL_COLUMNS = {"all": "cell_dev_mv", "rest": "cell_dev_rest_mv", "load": "cell_dev_load_mv"}
READ_DAYS = 16  # dates read from the lake at once: a year of a 10k-vehicle fleet is not held in memory in one go


@dataclass(frozen=True)
class DailyCounts:
    """One date of the daily zone, counted: vehicles with a row, and with the BMS alarm (bit 10) that day."""

    vehicles: int
    alarmed: int


@dataclass(frozen=True)
class PredictionCounts:
    """One as_of date of batch predictions for one feature set: vehicles scored, and at or above the threshold."""

    scored: int
    alarms: int


class ZoneListing:
    """A zone's objects grouped by date partition, listed again at most once every `revalidate_seconds`."""

    def __init__(self, lake: Lake, prefix: str, revalidate_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.lake, self.prefix = lake, prefix
        self.revalidate_seconds, self._clock = revalidate_seconds, clock
        self._pattern = re.compile(rf"^{re.escape(prefix)}/dt=(\d{{4}}-\d{{2}}-\d{{2}})/[^/]+\.parquet$")
        self._lock = threading.Lock()
        self._partitions: dict[date, Fingerprint] = {}
        self._listed_at = float("-inf")

    def partitions(self) -> dict[date, Fingerprint]:
        """date → its objects' (key, size, mtime_ns), sorted by key."""
        with self._lock:
            if self._clock() - self._listed_at < self.revalidate_seconds:
                return self._partitions
        found: dict[date, list[tuple[str, int, int]]] = {}
        for info in self.lake.list(self.prefix):
            match = self._pattern.match(info.key)
            if match:
                found.setdefault(date.fromisoformat(match[1]), []).append((info.key, info.size, info.mtime_ns))
        partitions = {day: tuple(sorted(objects)) for day, objects in sorted(found.items())}
        with self._lock:
            self._partitions, self._listed_at = partitions, self._clock()
        return partitions

    def days(self) -> list[date]:
        """Dates that have a partition, oldest first."""
        return list(self.partitions())


class PartitionCache(Generic[T]):
    """Per date, a value derived from that date's rows; derived again when the date's objects change.

    `read(first, last)` reads a range of dates at once (one listing of the zone per run of up to READ_DAYS missing
    dates);
    `derive(rows)` turns one date's rows (split on `date_column`) into the kept value. At most `max_dates` are
    kept, least recently used first out. Dates without a partition have no value (None)."""

    def __init__(self, listing: ZoneListing, read: Callable[[date, date], pa.Table], date_column: str,
                 derive: Callable[[pa.Table], T], max_dates: int):
        self.listing, self._read, self._date_column, self._derive = listing, read, date_column, derive
        self.max_dates = max_dates
        self._values: OrderedDict[date, tuple[Fingerprint, T]] = OrderedDict()
        self._lock = threading.Lock()  # guards _values
        self._build = threading.Lock()  # one lake read at a time: concurrent requests wait rather than read twice

    def get(self, days: Iterable[date]) -> dict[date, T]:
        """The value of each date that has a partition."""
        partitions = self.listing.partitions()
        wanted = sorted({day for day in days if day in partitions})
        found = self._cached(wanted, partitions)
        missing = [day for day in wanted if day not in found]
        if missing:
            with self._build:
                found |= self._cached(missing, partitions)
                for run in _runs([day for day in missing if day not in found]):
                    rows = self._read(run[0], run[-1])
                    for day in run:
                        value = self._derive(rows.filter(pc.equal(rows[self._date_column], pa.scalar(day, pa.date32()))))
                        found[day] = value
                        with self._lock:
                            self._values[day] = (partitions[day], value)
                            self._values.move_to_end(day)
                            while len(self._values) > self.max_dates:
                                self._values.popitem(last=False)
        return {day: found[day] for day in wanted}

    def _cached(self, days: list[date], partitions: dict[date, Fingerprint]) -> dict[date, T]:
        found = {}
        with self._lock:
            for day in days:
                kept = self._values.get(day)
                if kept is not None and kept[0] == partitions[day]:
                    self._values.move_to_end(day)
                    found[day] = kept[1]
        return found


def _runs(days: list[date], longest: int = READ_DAYS) -> list[list[date]]:
    """Sorted dates cut into runs of consecutive days, at most `longest` each (what one lake read may hold)."""
    runs: list[list[date]] = []
    for day in days:
        if runs and day - runs[-1][-1] == timedelta(days=1) and len(runs[-1]) < longest:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def daily_counts(rows: pa.Table) -> DailyCounts:
    """Vehicles reporting and vehicles with the BMS alarm in one date's daily rows."""
    return DailyCounts(vehicles=rows.num_rows, alarmed=int(pc.sum(pc.fill_null(rows["alarm"], False)).as_py() or 0))


def daily_columns(rows: pa.Table) -> pa.Table:
    """The few daily columns the fleet table and the vehicle page show."""
    return rows.select(DAILY_COLUMNS)


def newest_batch_rows(rows: pa.Table) -> pa.Table:
    """Batch predictions, one per vehicle, feature set and as_of: the newest made.

    Two champions may have scored the same date (a re-run after a promotion): the newest answer is the one that
    counts, as the alerts take it."""
    batch = rows.filter(pc.equal(rows["source"], "batch"))
    if batch.num_rows < 2:
        return batch
    batch = batch.sort_by([("created_at", "descending"), ("model_version", "descending")])
    numbered = batch.append_column("_row", pa.array(range(batch.num_rows), pa.int64()))
    first = numbered.group_by(["vin", "feature_set", "as_of"], use_threads=False).aggregate([("_row", "min")])
    return batch.take(pc.take(first["_row_min"], pc.sort_indices(first["_row_min"])))


def newest_batch_predictions(rows: pa.Table) -> pa.Table:
    """`newest_batch_rows` as the fleet table shows them: the strongest reason split out of `reasons`."""
    batch = newest_batch_rows(rows)
    if batch.num_rows == 0:
        return NEWEST_PREDICTION_SCHEMA.empty_table()
    strongest = [reasons[0] if reasons else None for reasons in batch["reasons"].to_pylist()]
    return pa.table({
        **{name: batch[name] for name in ("vin", "as_of", "feature_set", "model_version", "probability", "alarm",
                                          "threshold", "suspect_cell")},
        "reason_feature": pa.array([r and r["feature"] for r in strongest], pa.string()),
        "reason_value": pa.array([r and r["value"] for r in strongest], pa.float64()),
        "reason_contribution": pa.array([r and r["contribution"] for r in strongest], pa.float64()),
        "created_at": batch["created_at"],
    }, schema=NEWEST_PREDICTION_SCHEMA)


def prediction_counts(rows: pa.Table) -> dict[str, PredictionCounts]:
    """Per feature set: vehicles scored by batch inference on one as_of date, and how many at the threshold."""
    newest = newest_batch_rows(rows.select(["vin", "as_of", "feature_set", "model_version", "alarm", "source",
                                            "created_at"]))
    counts = {}
    for feature_set in sorted(set(newest["feature_set"].to_pylist())):
        mine = newest.filter(pc.equal(newest["feature_set"], feature_set))
        counts[feature_set] = PredictionCounts(scored=mine.num_rows,
                                               alarms=int(pc.sum(mine["alarm"].cast(pa.int64())).as_py() or 0))
    return counts


class LakeViews:
    """The dashboard's reads of one lake (see the module doc); one per app, shared by its request threads."""

    def __init__(self, lake: Lake, revalidate_seconds: float = 1.0, max_daily_dates: int = 130,
                 max_prediction_dates: int = 8, max_cell_vehicles: int = 16):
        self.lake = lake
        self.daily_listing = ZoneListing(lake, daily_zone.DAILY_PREFIX, revalidate_seconds)
        self.cell_listing = ZoneListing(lake, daily_zone.CELL_DAILY_PREFIX, revalidate_seconds)
        self.prediction_listing = ZoneListing(lake, predictions_zone.PREFIX, revalidate_seconds)

        def read_daily(first: date, last: date) -> pa.Table:
            return daily_zone.read_daily(lake, first, last)

        def read_predictions(first: date, last: date) -> pa.Table:
            return predictions_zone.read_predictions(lake, first, last)

        self.daily_counts = PartitionCache(self.daily_listing, read_daily, "dt", daily_counts, max_dates=4000)
        self.daily_rows = PartitionCache(self.daily_listing, read_daily, "dt", daily_columns, max_daily_dates)
        self.prediction_counts = PartitionCache(self.prediction_listing, read_predictions, "as_of", prediction_counts,
                                                max_dates=4000)
        self.batch_predictions = PartitionCache(self.prediction_listing, read_predictions, "as_of",
                                                newest_batch_predictions, max_prediction_dates)
        self.max_cell_vehicles = max_cell_vehicles
        self._cells: OrderedDict[tuple, pa.Table] = OrderedDict()
        self._cells_lock = threading.Lock()

    def daily_for(self, days: Iterable[date], vin: str | None = None) -> pa.Table:
        """The kept daily columns of these dates (one vehicle's, if given), by date."""
        tables = [table for _, table in sorted(self.daily_rows.get(days).items())]
        if not tables:
            return DAILY_SCHEMA.empty_table().select(DAILY_COLUMNS)
        rows = pa.concat_tables(tables)
        return rows.filter(pc.equal(rows["vin"], vin)) if vin is not None else rows

    def cell_rows(self, vin: str, days: Iterable[date], measure: str = "all") -> pa.Table:
        """One vehicle's per-cell deviations (dt, cell_index, value) on these dates, read with a filter on its VIN."""
        column = CELL_COLUMNS[measure]
        partitions = self.cell_listing.partitions()
        present = [day for day in sorted(set(days)) if day in partitions]
        fingerprint = tuple(obj for day in present for obj in partitions[day])
        wanted = (vin, column, fingerprint)
        with self._cells_lock:
            if wanted in self._cells:
                self._cells.move_to_end(wanted)
                return self._cells[wanted]
        rows = CELL_DAILY_SCHEMA.empty_table().select(["dt", "cell_index", column])
        if present:
            rows = daily_zone.read_cell_daily(self.lake, present[0], present[-1], vins=[vin],
                                              columns=["dt", "cell_index", column])
            if len(present) < (present[-1] - present[0]).days + 1:  # a gap in the dates asked for: leave it out
                rows = rows.filter(pc.is_in(rows["dt"], pa.array(present, pa.date32())))
        rows = rows.rename_columns(["dt", "cell_index", "value"])
        with self._cells_lock:
            self._cells[wanted] = rows
            while len(self._cells) > self.max_cell_vehicles:
                self._cells.popitem(last=False)
        return rows
