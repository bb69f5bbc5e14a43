"""Training and inference examples (one per vin and as_of date) from daily rows, and the feature sets' columns.

The SQL (sql/features/windows.sql) defines the windows and runs anywhere (DuckDB, Athena); `inference_window_matrix`
builds the same inference windows with numpy as arrays for batch scoring (100k windows: ~0.5 s, the query ~5 s here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.daily import as_dates, date_table
from pipelines.features.runner import Relation, run_sql
from pipelines.features.window_signals import CONTEXT_DAYS, FULL_SIGNALS, feature_columns, lag_column

KEY_COLUMNS = ["vin", "as_of", "context_days", "suspect_cell"]


def inference_windows(daily: Relation, as_of_dates: Iterable[date | str]) -> pa.Table:
    """Examples to score at the given as_of dates: every vehicle with a daily row among their 14 context days."""
    return run_sql("features/windows", daily=daily, as_of_dates=date_table(as_of_dates, "as_of"))


def training_windows(daily: Relation, as_of_dates: Iterable[date | str]) -> pa.Table:
    """Examples with 14 context days and the label (alarm on any day as_of ... as_of + 13; null if unobserved)."""
    as_of = date_table(as_of_dates, "as_of")
    contexts = run_sql("features/windows", daily=daily, as_of_dates=as_of)
    labels = run_sql("features/window_labels", daily=daily, as_of_dates=as_of)
    joined = contexts.join(labels, keys=["vin", "as_of"], join_type="left outer")
    joined = joined.set_column(joined.column_names.index("label_days"), "label_days",
                               pc.fill_null(joined["label_days"], 0))
    features = [c for c in contexts.column_names if c not in KEY_COLUMNS]
    return joined.select(KEY_COLUMNS + ["label", "label_days"] + features).sort_by([("vin", "ascending"), ("as_of", "ascending")])


def select_feature_set(windows: pa.Table, feature_set: str) -> pa.Table:
    """The key columns, the label when present, and the feature set's columns (`signals6`: the 84 reference values)."""
    label = [c for c in ("label", "label_days") if c in windows.column_names]
    return windows.select(KEY_COLUMNS + label + feature_columns(feature_set))


@dataclass(frozen=True)
class WindowMatrix:
    """Inference windows as arrays: what `inference_windows` + `select_feature_set` give, without 392 Arrow columns."""

    keys: pa.Table  # KEY_COLUMNS (vin, as_of, context_days, suspect_cell), ordered by vin then as_of
    columns: tuple[str, ...]  # the feature columns, in the order `matrix` returns them
    daily: pa.Table  # the daily rows the windows read
    daily_row: np.ndarray  # int64 (window, context day oldest first): the daily row of that day, -1 if none

    def matrix(self, dtype: type = np.float64) -> np.ndarray:
        """One row per window, one column per name in `columns`, NaN where the SQL gives null (float32: what a
        model reads, in half the memory)."""
        return self._assemble(self.daily_row, dtype)

    def matrix_rows(self, rows: np.ndarray) -> np.ndarray:
        """`matrix()` of some windows only (float64), by index."""
        return self._assemble(self.daily_row[rows], np.float64)

    def _assemble(self, daily_row: np.ndarray, dtype: type) -> np.ndarray:
        """The feature rows of the windows whose daily rows are `daily_row`."""
        signals = daily_columns_for(self.columns)[3:]
        values = [pc.fill_null(pc.cast(self.daily[s], pa.float64()), np.nan).to_numpy() for s in signals]
        cube = np.empty((len(daily_row), CONTEXT_DAYS, len(signals)), dtype)  # day-major, signal-minor
        # A block of windows is gathered signal by signal (contiguous writes), then transposed into place while it
        # is in cache: no second cube in memory (gathering all of it first cost ~0.5 s more at 100k × 392 here).
        block_rows = max(1, _BLOCK_VALUES // (CONTEXT_DAYS * max(len(signals), 1)))
        block = np.empty((len(signals), min(len(daily_row), block_rows), CONTEXT_DAYS))
        for start in range(0, len(daily_row), block_rows):
            rows = daily_row[start:start + block_rows]
            gathered, present = block[:, :len(rows)], np.maximum(rows, 0)
            for s, column in enumerate(values):
                np.take(column, present, out=gathered[s])
            gathered[:, rows < 0] = np.nan
            cube[start:start + len(rows)] = gathered.transpose(1, 2, 0)
        flat = cube.reshape(len(daily_row), CONTEXT_DAYS * len(signals))
        order = _column_order(self.columns, signals)
        return flat if order is None else flat[:, order]


_BLOCK_VALUES = 1 << 18  # float64 values gathered per block (2 MB): still in cache for the transpose


def _column_order(columns: tuple[str, ...], signals: list[str]) -> list[int] | None:
    """Positions of `columns` in the day-major, signal-minor layout (None when they are that layout)."""
    layout = {lag_column(s, k): i for i, (k, s) in enumerate((k, s) for k in range(CONTEXT_DAYS, 0, -1)
                                                            for s in signals)}
    order = [layout[c] for c in columns]
    return None if order == list(range(len(layout))) else order


_KEY_SCHEMA = pa.schema([pa.field("vin", pa.string()), pa.field("as_of", pa.date32()),
                         pa.field("context_days", pa.int64()), pa.field("suspect_cell", pa.int32())])
_LAG_COLUMNS = {lag_column(s, k): (s, k) for s in FULL_SIGNALS for k in range(1, CONTEXT_DAYS + 1)}


def daily_columns_for(columns: Sequence[str]) -> list[str]:
    """The daily columns that window feature columns (`<signal>_lag<k>`) are built from: vin, dt, suspect_cell and
    the signals, in order of first use."""
    unknown = [c for c in columns if c not in _LAG_COLUMNS]
    if unknown:
        raise ValueError(f"{len(unknown)} column(s) are not window features (<signal>_lag1 … _lag{CONTEXT_DAYS}), "
                         f"e.g. {unknown[:3]}")
    return ["vin", "dt", "suspect_cell", *dict.fromkeys(_LAG_COLUMNS[c][0] for c in columns)]


def inference_window_matrix(daily: pa.Table, as_of_dates: Iterable[date | str],
                            columns: Sequence[str]) -> WindowMatrix:
    """The windows sql/features/windows.sql builds from the same daily rows, computed with numpy (no SQL engine).

    The same rows, order and values as the query (a test compares them); the query stays the portable definition.
    `daily` must hold one row per (vin, dt) among the context days, as `daily_zone.read_daily` returns them."""
    columns = tuple(columns)
    signals = daily_columns_for(columns)[3:]
    missing = [c for c in ["vin", "dt", "suspect_cell", *signals] if c not in daily.column_names]
    if missing:
        raise ValueError(f"the daily rows lack column(s) {missing} that the windows read")
    for name in ("vin", "dt"):
        if daily[name].null_count:
            row = pc.index(pc.is_null(daily[name]), True).as_py()
            raise ValueError(f"daily row {row + 1}: {name} is missing")

    as_of = np.array(as_dates(as_of_dates), dtype="datetime64[D]").astype(np.int64)  # sorted, unique
    vins = pc.unique(daily["vin"])
    vins = vins.take(pc.sort_indices(vins))
    window_keys, daily_row = _context_rows(daily, vins, as_of)
    cells = _gather(daily["suspect_cell"], daily_row)
    latest = CONTEXT_DAYS - 1 - np.argmax(~np.isnan(cells[:, ::-1]), axis=1)  # the latest day that named a cell
    suspect = cells[np.arange(len(cells)), latest]
    keys = pa.Table.from_arrays([
        vins.take(pa.array(window_keys // max(len(as_of), 1))),
        pa.array(as_of[window_keys % max(len(as_of), 1)].astype("datetime64[D]"), pa.date32()),
        pa.array((daily_row >= 0).sum(axis=1), pa.int64()),
        pa.array(np.nan_to_num(suspect).astype(np.int32), pa.int32(), mask=np.isnan(suspect)),
    ], schema=_KEY_SCHEMA)
    return WindowMatrix(keys=keys, columns=columns, daily=daily, daily_row=daily_row)


def _context_rows(daily: pa.Table, vins: pa.Array, as_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The windows (keys vin index × len(as_of) + as_of index, ascending = by vin, as_of) and, per window and context
    day (oldest first), the daily row that fills it (-1: none)."""
    day = pc.cast(daily["dt"], pa.int32()).to_numpy().astype(np.int64)
    vin_index = pc.index_in(daily["vin"], value_set=vins).to_numpy().astype(np.int64)
    # Every (daily row, window) pair: a row feeds the as_of dates 1 … 14 days after its own date.
    first = np.searchsorted(as_of, day + 1)
    feeds = np.searchsorted(as_of, day + CONTEXT_DAYS + 1) - first
    row = np.repeat(np.arange(len(day)), feeds)
    slot = first[row] + np.arange(len(row)) - np.repeat(np.cumsum(feeds) - feeds, feeds)
    position = CONTEXT_DAYS - (as_of[slot] - day[row])  # 0: as_of - 14 … 13: as_of - 1
    window_keys, window = _dense_rank(vin_index[row] * len(as_of) + slot, len(vins) * len(as_of))
    daily_row = np.full((len(window_keys), CONTEXT_DAYS), -1, np.int64)
    daily_row[window, position] = row
    overwritten = daily_row[window, position] != row  # two rows of one vehicle and day
    if overwritten.any():
        duplicate = int(row[np.argmax(overwritten)])
        raise ValueError(f"daily rows are not unique on (vin, dt): {daily['vin'][duplicate].as_py()} "
                         f"{daily['dt'][duplicate].as_py()} appears more than once (read them with "
                         "daily_zone.read_daily, which keeps one row per vehicle and day)")
    return window_keys, daily_row


def _gather(column: pa.ChunkedArray, daily_row: np.ndarray) -> np.ndarray:
    """column[daily_row] as float64, NaN where the row is -1 (no daily row) or the value is null."""
    values = np.append(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), np.nan)  # index -1: the NaN
    return values[daily_row]


def _dense_rank(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for integer keys in [0, size): a bitmap instead of a sort when it is small."""
    if size > 64 * max(len(keys), 1_000_000):
        return np.unique(keys, return_inverse=True)
    present = np.zeros(size, bool)
    present[keys] = True
    unique = np.flatnonzero(present)
    rank = np.zeros(size, np.int64)
    rank[unique] = np.arange(len(unique))
    return unique, rank[keys]


def feature_matrix(windows: pa.Table, feature_names: Iterable[str]) -> np.ndarray:
    """The windows' features in the model's column order as float64 (null → NaN)."""
    names = list(feature_names)
    present = set(windows.column_names)  # the property builds a new list on every access
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"the windows lack {len(missing)} feature(s) the model needs, e.g. {missing[:3]}")
    if windows.num_rows == 0:
        return np.zeros((0, len(names)), dtype=np.float64)
    return np.column_stack([pc.cast(windows[n], pa.float64()).to_numpy(zero_copy_only=False) for n in names])
